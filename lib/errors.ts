// The error class of the package, and the factory the addon calls to turn a
// native status code into it.
import { ErrorCode, ErrorCodeName, errorCodeName, MemoryTagName, memoryTagName, mqttErrorString } from './codes';
import { NativeErrorContext } from './native';

/** Context fields that apply to an error. */
export interface MqttAllocatorErrorContext {
  clientId?: string;
  tag?: MemoryTagName;
  requested?: number;
  usage?: number;
  limit?: number;
  /** Id of the allocator whose limit refused the allocation. */
  allocatorId?: string;
}

/**
 * An error of this package. `code` is the code's name, as Node system errors
 * have it, and `errno` its number.
 */
export class MqttAllocatorError extends Error implements MqttAllocatorErrorContext {
  readonly code: ErrorCodeName;
  readonly errno: number;
  // `declare`: context fields that do not apply stay absent, rather than
  // own properties holding undefined.
  declare clientId?: string;
  declare tag?: MemoryTagName;
  declare requested?: number;
  declare usage?: number;
  declare limit?: number;
  declare allocatorId?: string;

  constructor(code: ErrorCodeName, message: string, context: MqttAllocatorErrorContext = {}) {
    super(message);
    this.name = 'MqttAllocatorError';
    this.code = code;
    this.errno = ErrorCode[code];
    for (const [key, value] of Object.entries(context)) {
      if (value !== undefined) (this as Record<string, unknown>)[key] = value;
    }
  }
}

const MAX_SHOWN_CHARS = 120;

/** Formats a value for a message: strings quoted and shortened, the rest by type. */
export function describeValue(value: unknown): string {
  if (typeof value === 'string') {
    const shown = value.length > MAX_SHOWN_CHARS ? `${value.slice(0, MAX_SHOWN_CHARS)}…` : value;
    return `${JSON.stringify(shown)}${value.length > MAX_SHOWN_CHARS ? ` (${value.length} characters)` : ''}`;
  }
  if (typeof value === 'number') return Object.is(value, -0) ? '-0' : String(value);
  if (typeof value === 'bigint') return `${value}n`;
  if (value === undefined) return 'undefined';
  if (value === null) return 'null';
  if (Array.isArray(value)) return `an array of length ${value.length}`;
  if (Buffer.isBuffer(value)) return `a Buffer of length ${value.length}`;
  if (typeof value === 'object') return `an object (${Object.prototype.toString.call(value)})`;
  return `${typeof value} ${String(value)}`;
}

/** Converts the addon's context into the error's context fields. */
export function errorContext(context: NativeErrorContext): MqttAllocatorErrorContext {
  return {
    clientId: context.clientId,
    tag: context.tag === undefined ? undefined : memoryTagName(context.tag),
    requested: context.requested,
    usage: context.usage,
    limit: context.limit,
    allocatorId: context.allocatorId,
  };
}

/** Builds the error for a native status code; installed as the addon's error hook. */
export function createNativeError(code: number, detail: string, context: NativeErrorContext): MqttAllocatorError {
  const name = errorCodeName(code) ?? 'MQ_ERR_ALLOCATOR';
  const fields = errorContext(context);
  let message = `${mqttErrorString(code)}: ${detail}`;
  if (context.clientId !== undefined) message += ` (client ${describeValue(context.clientId)})`;
  if (context.limit !== undefined && context.usage !== undefined) {
    message +=
      `: allocator ${describeValue(context.allocatorId)} (${fields.tag}) has ${context.usage} of ` +
      `${context.limit} bytes in use and the block needs ${context.charge} more`;
  }
  return new MqttAllocatorError(name, message, fields);
}

/** Returns an MQ_ERR_INVALID_ARGS error naming the bad value and what is expected. */
export function invalidArgument(name: string, value: unknown, expected: string): MqttAllocatorError {
  return new MqttAllocatorError(
    'MQ_ERR_INVALID_ARGS',
    `invalid ${name}: ${describeValue(value)}; expected ${expected}`,
  );
}
