// Error codes and memory tags, taken from the addon so that the TypeScript
// names and values cannot drift from the C++ lists. The literal types below
// are checked against the addon's lists by a test.
import { native } from './native';

export const ErrorCode = {
  MQ_SUCCESS: 0,
  MQ_ERR_ALLOCATOR: -700,
  MQ_ERR_ALLOCATOR_CREATE: -701,
  MQ_ERR_ALLOCATOR_NOT_FOUND: -702,
  MQ_ERR_ALLOCATOR_CLEANUP: -703,
  MQ_ERR_ALLOCATOR_LIMIT_EXCEEDED: -704,
  MQ_ERR_ALLOCATOR_INVALID_PARENT: -705,
  MQ_ERR_ALLOCATOR_INVALID_TAG: -706,
  MQ_ERR_ALLOCATOR_HIERARCHY: -707,
  MQ_ERR_INVALID_ARGS: -800,
} as const;

export type ErrorCodeName = keyof typeof ErrorCode;

/** Memory tags without the MEM_TAG_ prefix, with their native values. */
export const MemoryTag = {
  ROOT: 0,
  SOCKET: 1,
  CLIENT: 2,
  SESSION_MANAGER: 3,
  TOPIC_TREE: 4,
  SERVER: 5,
  SESSION: 6,
  SESSION_QUEUE: 7,
  SESSION_WORKER: 8,
  MESSAGE_CACHE: 9,
} as const;

export type MemoryTagName = keyof typeof MemoryTag;

const errorByValue = new Map(native.errorCodes.map((entry) => [entry.value, entry]));
const tagNames = native.memoryTags.map((name) => name.replace(/^MEM_TAG_/, '') as MemoryTagName);

/** Returns the description of an error code (a number or a name). */
export function mqttErrorString(code: number | string): string {
  const value = typeof code === 'string' ? (ErrorCode as Record<string, number>)[code] : code;
  return errorByValue.get(value as number)?.message ?? 'unknown error code';
}

/** Returns the name of an error code, or undefined for an unknown value. */
export function errorCodeName(value: number): ErrorCodeName | undefined {
  return errorByValue.get(value)?.name as ErrorCodeName | undefined;
}

/** Returns the name of a tag value, or undefined for an unknown value. */
export function memoryTagName(value: number): MemoryTagName | undefined {
  return tagNames[value];
}

/** Tag names in value order. */
export function memoryTagNames(): readonly MemoryTagName[] {
  return tagNames;
}
