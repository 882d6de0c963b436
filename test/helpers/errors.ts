// The error a call throws, for tests that inspect its fields.

/** Returns the error that `action` throws, failing the test unless it is an
 * instance of `type`, or if nothing is thrown. */
export function thrownBy<T extends Error>(action: () => unknown, type: abstract new (...args: never[]) => T): T {
  try {
    action();
  } catch (error) {
    expect(error).toBeInstanceOf(type);
    return error as T;
  }
  throw new Error(`expected a ${type.name}, but nothing was thrown`);
}
