// Error codes and memory tags: the TypeScript lists equal the addon's, and
// every code has its exact value and description.
import { ErrorCode, MemoryTag, mqttErrorString } from '../lib';
import { native } from '../lib/native';

const expectedCodes: Array<[string, number]> = [
  ['MQ_SUCCESS', 0],
  ['MQ_ERR_ALLOCATOR', -700],
  ['MQ_ERR_ALLOCATOR_CREATE', -701],
  ['MQ_ERR_ALLOCATOR_NOT_FOUND', -702],
  ['MQ_ERR_ALLOCATOR_CLEANUP', -703],
  ['MQ_ERR_ALLOCATOR_LIMIT_EXCEEDED', -704],
  ['MQ_ERR_ALLOCATOR_INVALID_PARENT', -705],
  ['MQ_ERR_ALLOCATOR_INVALID_TAG', -706],
  ['MQ_ERR_ALLOCATOR_HIERARCHY', -707],
  ['MQ_ERR_INVALID_ARGS', -800],
];

const expectedTags = [
  'ROOT',
  'SOCKET',
  'CLIENT',
  'SESSION_MANAGER',
  'TOPIC_TREE',
  'SERVER',
  'SESSION',
  'SESSION_QUEUE',
  'SESSION_WORKER',
  'MESSAGE_CACHE',
];

describe('ErrorCode', () => {
  test('equals the addon list', () => {
    const fromAddon = Object.fromEntries(native.errorCodes.map((entry) => [entry.name, entry.value]));
    expect(ErrorCode).toEqual(fromAddon);
  });

  test('lists the codes in the addon order', () => {
    expect(Object.keys(ErrorCode)).toEqual(native.errorCodes.map((entry) => entry.name));
  });

  test.each(expectedCodes)('%s is %i', (name, value) => {
    expect((ErrorCode as Record<string, number>)[name]).toBe(value);
  });

  test('has no other codes', () => {
    expect(Object.keys(ErrorCode)).toHaveLength(expectedCodes.length);
  });
});

describe('mqttErrorString', () => {
  test.each(native.errorCodes.map((entry) => [entry.name, entry.value, entry.message] as const))(
    '%s by number gives the addon message',
    (_name, value, message) => {
      expect(mqttErrorString(value)).toBe(message);
    },
  );

  test.each(native.errorCodes.map((entry) => [entry.name, entry.message] as const))(
    '%s by name gives the addon message',
    (name, message) => {
      expect(mqttErrorString(name)).toBe(message);
    },
  );

  test.each(native.errorCodes.filter((entry) => entry.value !== 0).map((entry) => [entry.name] as const))(
    '%s has a message of its own',
    (name) => {
      const others = native.errorCodes.filter((entry) => entry.name !== name).map((entry) => mqttErrorString(entry.name));
      expect(others).not.toContain(mqttErrorString(name));
    },
  );

  test.each([[-1], [-799], [1], [Number.NaN]])('unknown number %p gives "unknown error code"', (value) => {
    expect(mqttErrorString(value)).toBe('unknown error code');
  });

  test('unknown name gives "unknown error code"', () => {
    expect(mqttErrorString('MQ_ERR_NOPE')).toBe('unknown error code');
  });

  test('an inherited property name gives "unknown error code"', () => {
    expect(mqttErrorString('toString')).toBe('unknown error code');
  });
});

describe('MemoryTag', () => {
  test('equals the addon list without the MEM_TAG_ prefix', () => {
    const fromAddon = Object.fromEntries(native.memoryTags.map((name, index) => [name.replace(/^MEM_TAG_/, ''), index]));
    expect(MemoryTag).toEqual(fromAddon);
  });

  test('every addon tag has the MEM_TAG_ prefix', () => {
    expect(native.memoryTags.filter((name) => !name.startsWith('MEM_TAG_'))).toEqual([]);
  });

  test('lists the tags in order', () => {
    expect(Object.keys(MemoryTag)).toEqual(expectedTags);
  });

  test.each(expectedTags.map((name, index) => [name, index] as const))('%s is %i', (name, value) => {
    expect((MemoryTag as Record<string, number>)[name]).toBe(value);
  });
});
