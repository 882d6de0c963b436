// Shared helpers of the jest tests: garbage collection with event-loop turns,
// error capture, and worker threads that load the compiled package.
import path from 'node:path';
import { Worker } from 'node:worker_threads';

import { MqttAllocatorError } from '../../lib';

/** The package root, which worker threads and child processes require (it resolves to dist/). */
export const PACKAGE_ROOT = path.join(__dirname, '..', '..');

/** Runs one full garbage collection. The suite runs under node --expose-gc. */
export function collectGarbage(): void {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (gc === undefined) throw new Error('global.gc is missing: run jest with node --expose-gc');
  gc();
}

/** Lets a few event-loop turns pass, so that pending Buffer finalizers run. */
export async function eventLoopTurns(count = 4): Promise<void> {
  for (let i = 0; i < count; i++) {
    await new Promise<void>((resolve) => setImmediate(resolve));
    await new Promise<void>((resolve) => setTimeout(resolve, 0));
  }
}

/** Collects garbage and waits for finalizers, a few times over. */
export async function settle(): Promise<void> {
  for (let i = 0; i < 3; i++) {
    collectGarbage();
    await eventLoopTurns();
  }
}

/** Runs `action` and returns the error it threw, or fails when it threw nothing. */
export function thrown(action: () => unknown): MqttAllocatorError {
  try {
    action();
  } catch (error) {
    return error as MqttAllocatorError;
  }
  throw new Error('expected the call to throw');
}

// Exit of every started worker, recorded from the start: a worker that exits
// right after posting emits 'message' and 'exit' in one callback, so a
// listener attached after the message arrived would miss the exit.
const exits = new WeakMap<Worker, Promise<number>>();

/** Starts a worker from inline CommonJS source, with the package root in `workerData.root`. */
export function startWorker(source: string, data: Record<string, unknown> = {}): Worker {
  const worker = new Worker(source, { eval: true, workerData: { root: PACKAGE_ROOT, ...data } });
  const exit = new Promise<number>((resolve, reject) => {
    worker.once('error', reject);
    worker.once('exit', resolve);
  });
  // A test that expects the worker to fail may never await its exit.
  exit.catch(() => undefined);
  exits.set(worker, exit);
  return worker;
}

/** Resolves with the worker's next message, and rejects if the worker fails or exits first. */
export function nextMessage<T>(worker: Worker): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const cleanup = (): void => {
      worker.off('message', onMessage);
      worker.off('error', onError);
      worker.off('exit', onExit);
    };
    const onMessage = (message: T): void => {
      cleanup();
      resolve(message);
    };
    const onError = (error: Error): void => {
      cleanup();
      reject(error);
    };
    const onExit = (code: number): void => {
      cleanup();
      reject(new Error(`worker exited with code ${code} before sending a message`));
    };
    worker.on('message', onMessage);
    worker.on('error', onError);
    worker.on('exit', onExit);
  });
}

/** Resolves with the worker's exit code, and rejects on an uncaught error. */
export function exited(worker: Worker): Promise<number> {
  const exit = exits.get(worker);
  if (exit === undefined) throw new Error('exited() needs a worker made by startWorker()');
  return exit;
}
