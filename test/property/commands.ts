// fast-check arbitraries for the command sequences of the property tests,
// and the run sizes: modest by default, many more with MQSA_LONG=1.
import fc from 'fast-check';

import type { Command } from './model';

/** MQSA_LONG=1 runs many more and longer sequences (minutes, not seconds). */
export const LONG = process.env.MQSA_LONG === '1';

// Sizes around the backends' smallest blocks and size-class edges, and
// anything up to a few KiB.
const size = fc.oneof(fc.constantFrom(0, 1, 7, 8, 9, 15, 16, 17, 24, 25, 4095, 4096, 4097), fc.integer({ min: 0, max: 6000 }));

export function commandArbitrary(clientCount: number): fc.Arbitrary<Command> {
  const client = fc.integer({ min: 0, max: clientCount - 1 });
  return fc.oneof(
    { weight: 3, arbitrary: fc.record({ kind: fc.constant('register' as const), client, limit: fc.option(fc.integer({ min: 0, max: 20000 }), { nil: undefined }), expiry: fc.constantFrom(0 as const, 3600 as const) }) },
    { weight: 10, arbitrary: fc.record({ kind: fc.constant('allocate' as const), client, size, component: fc.constantFrom('session' as const, 'queue' as const, 'worker' as const) }) },
    { weight: 2, arbitrary: fc.record({ kind: fc.constant('allocateCache' as const), size }) },
    { weight: 5, arbitrary: fc.record({ kind: fc.constant('release' as const), pick: fc.nat() }) },
    { weight: 3, arbitrary: fc.record({ kind: fc.constant('drop' as const), pick: fc.nat() }) },
    { weight: 1, arbitrary: fc.constant({ kind: 'collect' as const }) },
    {
      weight: 3,
      arbitrary: fc.record({
        kind: fc.constant('setLimit' as const),
        client,
        target: fc.constantFrom('client' as const, 'queue' as const),
        change: fc.constantFrom('raise' as const, 'lower' as const, 'remove' as const),
        amount: fc.integer({ min: 0, max: 8000 }),
      }),
    },
    { weight: 2, arbitrary: fc.record({ kind: fc.constant('unregister' as const), client }) },
    { weight: 1, arbitrary: fc.constant({ kind: 'cleanup' as const }) },
  );
}

/** A sequence that starts by registering a client, so most runs allocate. */
export function commandsArbitrary(clientCount: number, maxLength: number): fc.Arbitrary<Command[]> {
  return fc
    // fast-check's default size keeps arrays to about ten elements; a
    // larger one makes sequences long enough to reach refusals and cleanups
    // with many buffers live.
    .tuple(fc.integer({ min: 0, max: clientCount - 1 }), fc.array(commandArbitrary(clientCount), { maxLength, size: LONG ? 'max' : 'medium' }))
    .map(([first, rest]): Command[] => [{ kind: 'register', client: first, limit: undefined, expiry: 0 }, ...rest]);
}
