// A model of the accounting that the property tests drive with random
// command sequences. It keeps every buffer it allocated with the usable
// bytes that allocation charged (the usage change of the allocator it came
// from), and after every step compares the package's independent counters
// (session, component, thread, root, tag and per-client figures, and the
// hierarchy) with the sums of those charges.
//
// The module only imports types, so the worker-thread variant can run its
// transpiled JavaScript against the compiled package: the package is passed
// in, never required here.
import type { AllocatorHandle, GlobalSessionManager, ThreadLocalSessionManager } from '../../lib';
import type { AllocatorNode } from '../../lib';

export type Component = 'session' | 'queue' | 'worker';
export type LimitTarget = 'client' | 'queue';
export type LimitChange = 'raise' | 'lower' | 'remove';

export type Command =
  | { kind: 'register'; client: number; limit: number | undefined; expiry: 0 | 3600 }
  | { kind: 'allocate'; client: number; size: number; component: Component }
  | { kind: 'allocateCache'; size: number }
  | { kind: 'release'; pick: number }
  | { kind: 'drop'; pick: number }
  | { kind: 'collect' }
  | { kind: 'setLimit'; client: number; target: LimitTarget; change: LimitChange; amount: number }
  | { kind: 'unregister'; client: number }
  | { kind: 'cleanup' };

/** What the model needs of the package, passed in by the caller. */
export interface PackageApi {
  manager: GlobalSessionManager;
  sessions: ThreadLocalSessionManager;
}

export interface ModelOptions {
  /** Client ids this model uses; no other code may use them meanwhile. */
  clients: string[];
  /** Runs a full collection and lets pending finalizers run. */
  collect: () => Promise<void>;
  /** Checks root usage and the process-wide tag usage; only sound while no
   * other thread allocates. */
  processWide: boolean;
}

interface Generation {
  clientId: string;
  session: AllocatorHandle;
  queue: AllocatorHandle;
  worker: AllocatorHandle;
  /** 'removed' once its allocators were detached by a cleanup. */
  state: 'registered' | 'unregistered' | 'removed';
  expiry: number;
  /** Set when the last limit change left usage above the limit. */
  overAllowed: { session: boolean; queue: boolean };
}

interface Tracked {
  /** Null once dropped for the garbage collector. */
  buffer: Buffer | null;
  weak: WeakRef<Buffer>;
  size: number;
  charge: number;
  component: Component | 'cache';
  generation: Generation | undefined;
  tag: string;
}

interface Baseline {
  global: number;
  stats: ReturnType<ThreadLocalSessionManager['getMemoryStatistics']>;
  tags: Record<string, number>;
  threadOrphans: number;
}

/** Returns an upper bound of the usable size for a request of `size`
 * bytes. The backend rounds a request up to its block size; 25% plus 32
 * bytes is an estimate with room to spare over the size classes observed
 * with tcmalloc and glibc for the sizes these tests use. */
export function maxCharge(size: number): number {
  return Math.max(32, Math.ceil(size * 1.25) + 32);
}

export class ModelFailure extends Error {}

function fail(message: string): never {
  throw new ModelFailure(message);
}

function expectEqual(actual: unknown, expected: unknown, what: string): void {
  if (actual !== expected) fail(`${what}: got ${String(actual)}, expected ${String(expected)}`);
}

export class AccountingModel {
  private readonly manager: GlobalSessionManager;
  private readonly sessions: ThreadLocalSessionManager;
  private readonly live: Tracked[] = [];
  // Dropped buffers not yet freed. They stay reachable from here until the
  // next collect step, so that a collection the engine starts on its own
  // between two steps cannot free one behind the model's back.
  private droppedSinceCollect: Buffer[] = [];
  private readonly current = new Map<string, Generation>();
  private readonly removed: Generation[] = [];
  private readonly cache: AllocatorHandle;
  private readonly threadId: string;
  private baseline!: Baseline;
  readonly log: string[] = [];

  constructor(
    api: PackageApi,
    private readonly options: ModelOptions,
  ) {
    this.manager = api.manager;
    this.sessions = api.sessions;
    this.cache = this.sessions.sessionAllocators.getMessageCacheAllocator();
    this.threadId = this.threadNodeId();
  }

  /** Records the figures every check compares against; call with no
   * session of `clients` registered anywhere. */
  start(): void {
    if (this.manager.getThreadMemoryLimit() !== 0 || this.manager.getGlobalMemoryLimit() !== 0) {
      fail('the model needs the thread and global limits to be 0');
    }
    for (const clientId of this.options.clients) {
      if (this.manager.getClientMemoryUsage().has(clientId)) fail(`client ${clientId} is already registered`);
      this.manager.clearClientMemoryLimit(clientId);
    }
    this.baseline = {
      global: this.manager.getGlobalMemoryUsage(),
      stats: this.sessions.getMemoryStatistics(),
      tags: this.manager.getTagUsage(),
      threadOrphans: this.orphansAtThread(),
    };
  }

  async apply(command: Command): Promise<void> {
    this.log.push(JSON.stringify(command));
    this.syncRemovals(false);
    switch (command.kind) {
      case 'register':
        return this.register(command.client, command.limit, command.expiry);
      case 'allocate':
        return this.allocate(command.client, command.size, command.component);
      case 'allocateCache':
        return this.allocateCache(command.size);
      case 'release':
        return this.release(command.pick);
      case 'drop':
        return this.drop(command.pick);
      case 'collect':
        return this.collect();
      case 'setLimit':
        return this.setLimit(command.client, command.target, command.change, command.amount);
      case 'unregister':
        return this.unregister(command.client);
      case 'cleanup':
        return this.cleanup();
    }
  }

  /** Releases everything, removes every session, and checks that all
   * figures are back at the baseline. */
  async finish(): Promise<void> {
    // Dropped buffers that the collector has not freed yet are released
    // through their WeakRef, so the end state does not depend on its timing.
    for (const entry of this.live) {
      const buffer = entry.buffer ?? entry.weak.deref();
      if (buffer !== undefined) this.sessions.release(buffer);
    }
    this.live.length = 0;
    await this.collect();
    for (const generation of this.current.values()) {
      this.sessions.sessionAllocators.cleanupSessionAllocators(generation.clientId);
      generation.state = 'removed';
      this.removed.push(generation);
    }
    this.current.clear();
    for (const clientId of this.options.clients) this.manager.clearClientMemoryLimit(clientId);
    this.check();
    for (const generation of this.removed) {
      expectEqual(generation.session.usage, 0, `usage of removed session ${generation.clientId}`);
    }
    expectEqual(this.sessions.getMemoryStatistics().totalUsage, this.baseline.stats.totalUsage, 'thread usage at the end');
    if (this.options.processWide) {
      expectEqual(this.manager.getGlobalMemoryUsage(), this.baseline.global, 'global usage at the end');
    }
  }

  /** Best-effort teardown after a failed run, so the next run starts clean:
   * releases what it can, removes the sessions and lets the collector free
   * dropped buffers. Checks nothing. */
  async dispose(): Promise<void> {
    for (const entry of this.live) {
      if (entry.buffer === null) continue;
      try {
        this.sessions.release(entry.buffer);
      } catch {
        // Released already by the step that failed.
      }
    }
    this.live.length = 0;
    this.droppedSinceCollect = [];
    for (const clientId of this.options.clients) {
      this.sessions.sessionAllocators.cleanupSessionAllocators(clientId);
      this.manager.clearClientMemoryLimit(clientId);
    }
    this.current.clear();
    await this.options.collect();
  }

  private register(client: number, limit: number | undefined, expiry: number): void {
    const clientId = this.options.clients[client];
    const held = this.current.get(clientId);
    const expectedLimit = limit ?? this.manager.getClientMemoryLimit(clientId);
    const registration = this.sessions.registerSession(clientId, { memoryLimit: limit, expiryInterval: expiry });
    expectEqual(registration.resumed, held !== undefined, `resumed flag of ${clientId}`);
    expectEqual(registration.limit, expectedLimit, `limit of ${clientId} after registering`);

    const allocators = this.sessions.sessionAllocators;
    const session = allocators.getSessionAllocator(clientId);
    if (held !== undefined) {
      if (held.session.id !== session.id || held.session.detached) fail(`${clientId} was not resumed`);
      held.state = 'registered';
      held.expiry = expiry;
      held.overAllowed.session = session.limit !== 0 && session.usage > session.limit;
      return;
    }
    expectEqual(session.usage, 0, `usage of new session ${clientId}`);
    this.current.set(clientId, {
      clientId,
      session,
      queue: allocators.getSessionQueueAllocator(clientId),
      worker: allocators.getSessionWorkerAllocator(clientId),
      state: 'registered',
      expiry,
      overAllowed: { session: false, queue: false },
    });
  }

  private allocate(client: number, size: number, component: Component): void {
    const clientId = this.options.clients[client];
    const generation = this.current.get(clientId);
    if (generation === undefined) {
      const error = this.errorOf(() => this.sessions.tryAllocate(clientId, size, component));
      expectEqual(error, 'MQ_ERR_ALLOCATOR_NOT_FOUND', `allocating for unregistered ${clientId}`);
      return;
    }
    const node = generation[component];
    const path = component === 'session' ? [node] : [node, generation.session];
    const before = path.map((handle) => ({ usage: handle.usage, limit: handle.limit }));
    const buffer = this.sessions.tryAllocate(clientId, size, component);
    if (buffer === undefined) {
      // A rejection needs a limit on the path that this size could pass.
      const fits = before.every((entry) => entry.limit === 0 || entry.usage + maxCharge(size) <= entry.limit);
      if (fits) fail(`allocation of ${size} from ${clientId}/${component} rejected with room under every limit`);
      path.forEach((handle, index) => expectEqual(handle.usage, before[index].usage, `usage after a rejection (${handle.id})`));
      return;
    }
    const charge = node.usage - before[0].usage;
    this.checkCharge(buffer, size, charge);
    path.forEach((handle, index) => {
      expectEqual(handle.usage - before[index].usage, charge, `charge seen by ${handle.id}`);
      const { limit } = before[index];
      if (limit !== 0 && before[index].usage + charge > limit) {
        fail(`allocation passed the limit ${limit} of ${handle.id} (usage ${before[index].usage}, charge ${charge})`);
      }
    });
    this.track(buffer, size, charge, component, generation, node.tag);
  }

  private allocateCache(size: number): void {
    // The cache node is process-wide, so cache buffers of other threads change
    // its usage as well. This thread's cacheUsage changes by this charge only.
    const before = this.sessions.getMemoryStatistics().cacheUsage;
    const cacheNodeBefore = this.cache.usage;
    const buffer = this.sessions.allocateCache(size);
    const charge = this.sessions.getMemoryStatistics().cacheUsage - before;
    this.checkCharge(buffer, size, charge);
    if (this.options.processWide) {
      expectEqual(this.cache.usage - cacheNodeBefore, charge, 'charge seen by the message cache');
    }
    this.track(buffer, size, charge, 'cache', undefined, this.cache.tag);
  }

  private release(pick: number): void {
    const held = this.live.filter((entry) => entry.buffer !== null);
    if (held.length === 0) return;
    const entry = held[pick % held.length];
    const buffer = entry.buffer as Buffer;
    const usage = this.sessions.getMemoryStatistics().totalUsage;
    this.sessions.release(buffer);
    expectEqual(buffer.length, 0, 'length of a released buffer');
    expectEqual(usage - this.sessions.getMemoryStatistics().totalUsage, entry.charge, 'bytes a release returned');
    expectEqual(this.errorOf(() => this.sessions.release(buffer)), 'MQ_ERR_INVALID_ARGS', 'a second release');
    this.live.splice(this.live.indexOf(entry), 1);
  }

  private drop(pick: number): void {
    const held = this.live.filter((entry) => entry.buffer !== null);
    if (held.length === 0) return;
    const entry = held[pick % held.length];
    this.droppedSinceCollect.push(entry.buffer as Buffer);
    entry.buffer = null;
  }

  private async collect(): Promise<void> {
    this.droppedSinceCollect = [];
    await this.options.collect();
    // A dropped buffer that the collector freed is uncharged by its
    // finalizer, which Node runs on a later event-loop turn; one the
    // collector kept (still reachable through the WeakRef) stays charged.
    for (let index = this.live.length - 1; index >= 0; index--) {
      const entry = this.live[index];
      if (entry.buffer !== null) continue;
      const survivor = entry.weak.deref();
      if (survivor === undefined) {
        this.live.splice(index, 1);
      } else {
        // Not freed by this collection: reachable again until the next one.
        this.droppedSinceCollect.push(survivor);
      }
    }
    // Give the finalizers of collected buffers a bounded number of further
    // collections to run; the check that follows fails if some never do.
    const expected = this.baseline.stats.liveBuffers + this.live.length;
    for (let round = 0; round < 10 && this.sessions.getMemoryStatistics().liveBuffers !== expected; round++) {
      await this.options.collect();
    }
  }

  private setLimit(client: number, target: LimitTarget, change: LimitChange, amount: number): void {
    const clientId = this.options.clients[client];
    const generation = this.current.get(clientId);
    if (generation === undefined) {
      // A limit set before the client registers applies when it does.
      if (target === 'client') {
        const limit = change === 'remove' ? 0 : amount + 1;
        this.manager.setClientMemoryLimit(clientId, limit);
        expectEqual(this.manager.getClientMemoryLimit(clientId), limit, `stored limit of ${clientId}`);
      }
      return;
    }
    const handle = target === 'client' ? generation.session : generation.queue;
    const usage = handle.usage;
    let limit = 0;
    if (change === 'raise') limit = usage + amount + 1;
    if (change === 'lower') limit = usage > 1 ? Math.max(1, usage - 1 - (amount % usage)) : 1;
    if (target === 'client') {
      this.manager.setClientMemoryLimit(clientId, limit);
      expectEqual(this.manager.getClientMemoryLimit(clientId), limit, `getClientMemoryLimit(${clientId})`);
    } else {
      handle.limit = limit;
    }
    expectEqual(handle.limit, limit, `limit of ${handle.id}`);
    expectEqual(handle.usage, usage, `usage of ${handle.id} after a limit change`);
    generation.overAllowed[target === 'client' ? 'session' : 'queue'] = limit !== 0 && usage > limit;
  }

  private unregister(client: number): void {
    const clientId = this.options.clients[client];
    const generation = this.current.get(clientId);
    if (generation === undefined) {
      const error = this.errorOf(() => this.sessions.unregisterSession(clientId));
      expectEqual(error, 'MQ_ERR_ALLOCATOR_NOT_FOUND', `unregistering unknown ${clientId}`);
      return;
    }
    this.sessions.unregisterSession(clientId);
    generation.state = 'unregistered';
  }

  private cleanup(): void {
    this.manager.cleanupExpiredAllocators();
    this.syncRemovals(true);
  }

  /**
   * Moves sessions whose allocators were removed to the removed list. Only a
   * session unregistered with expiry 0 may be removed, by this thread's
   * cleanup or (when other threads run cleanups) by another thread's.
   * `afterOwnCleanup`: this thread just ran a cleanup, so every such session
   * must be gone.
   */
  private syncRemovals(afterOwnCleanup: boolean): void {
    for (const generation of [...this.current.values()]) {
      if (generation.session.detached) {
        // Only a session unregistered with expiry 0 may go; its allocators
        // go together.
        if (generation.state !== 'unregistered' || generation.expiry !== 0) {
          fail(`cleanup removed ${generation.clientId} (state ${generation.state}, expiry ${generation.expiry})`);
        }
        if (!generation.queue.detached || !generation.worker.detached) fail(`${generation.clientId} half removed`);
        generation.state = 'removed';
        this.removed.push(generation);
        this.current.delete(generation.clientId);
      } else if (afterOwnCleanup && generation.state === 'unregistered' && generation.expiry === 0) {
        fail(`cleanup kept ${generation.clientId}, unregistered with expiry 0`);
      }
    }
  }

  private track(buffer: Buffer, size: number, charge: number, component: Component | 'cache', generation: Generation | undefined, tag: string): void {
    this.live.push({ buffer, weak: new WeakRef(buffer), size, charge, component, generation, tag });
  }

  private checkCharge(buffer: Buffer, size: number, charge: number): void {
    expectEqual(buffer.length, size, 'buffer length');
    if (charge < Math.max(size, 1) || charge > maxCharge(size)) fail(`charge ${charge} for ${size} bytes`);
  }

  private errorOf(action: () => unknown): string | undefined {
    try {
      action();
    } catch (error) {
      return (error as { code?: string }).code;
    }
    return undefined;
  }

  private threadNodeId(): string {
    // The thread's node is the one holding this thread's sessions; the
    // caller's thread holds a probe session for the moment it takes to find it.
    const probe = `${this.options.clients[0]}-probe`;
    this.sessions.registerSession(probe, { expiryInterval: 0 });
    const root = this.manager.getAllocatorHierarchy();
    const owner = root.children.find((node) => node.children.some((child) => child.id === probe));
    this.sessions.sessionAllocators.cleanupSessionAllocators(probe);
    if (owner === undefined) fail('could not find the thread allocator');
    return owner.id;
  }

  private threadNode(): AllocatorNode {
    const node = this.manager.getAllocatorHierarchy().children.find((child) => child.id === this.threadId);
    if (node === undefined) fail(`thread allocator ${this.threadId} is missing`);
    return node;
  }

  private orphansAtThread(): number {
    const node = this.threadNode();
    return node.usage - node.selfUsage - node.children.reduce((sum, child) => sum + child.usage, 0);
  }

  /** Compares every counter with the model; throws ModelFailure on a difference. */
  check(): void {
    const sum = (entries: Tracked[]): number => entries.reduce((total, entry) => total + entry.charge, 0);
    const of = (generation: Generation, component?: Component): Tracked[] =>
      this.live.filter((entry) => entry.generation === generation && (component === undefined || entry.component === component));

    const details = new Map(this.manager.getClientMemoryDetails().map((entry) => [entry.clientId, entry]));
    let sessionBytes = 0;
    let queueBytes = 0;
    let workerBytes = 0;
    this.syncRemovals(false);
    // When other threads run cleanups, a session unregistered with expiry 0
    // may be removed at any moment, even during this check; the figures
    // that its removal moves are then only compared while there is none.
    const mayVanish = (generation: Generation): boolean =>
      !this.options.processWide && generation.state === 'unregistered' && generation.expiry === 0;
    const settled = ![...this.current.values()].some(mayVanish);
    for (const generation of this.current.values()) {
      const { clientId, session, queue, worker } = generation;
      const total = sum(of(generation));
      expectEqual(session.usage, total, `usage of session ${clientId}`);
      expectEqual(queue.usage, sum(of(generation, 'queue')), `usage of ${clientId}/queue`);
      expectEqual(worker.usage, sum(of(generation, 'worker')), `usage of ${clientId}/worker`);
      expectEqual(session.stats().selfUsage, sum(of(generation, 'session')), `self usage of ${clientId}`);
      expectEqual(session.stats().liveBlocks, of(generation, 'session').length, `live blocks of ${clientId}`);
      if (!mayVanish(generation)) {
        expectEqual(this.sessions.getSessionMemoryUsage(clientId), total, `getSessionMemoryUsage(${clientId})`);
        expectEqual(details.get(clientId)?.usage, total, `getClientMemoryDetails usage of ${clientId}`);
        expectEqual(details.get(clientId)?.limit, session.limit, `getClientMemoryDetails limit of ${clientId}`);
        expectEqual(details.get(clientId)?.connected, generation.state === 'registered', `connected flag of ${clientId}`);
        sessionBytes += sum(of(generation, 'session'));
        queueBytes += sum(of(generation, 'queue'));
        workerBytes += sum(of(generation, 'worker'));
      }
      this.checkLimit(generation, 'session', session);
      this.checkLimit(generation, 'queue', queue);
    }
    for (const generation of this.removed) {
      if (!generation.session.detached) fail(`removed session ${generation.clientId} is not detached`);
      expectEqual(generation.session.usage, sum(of(generation)), `usage of removed session ${generation.clientId}`);
    }
    const orphanBytes = sum(this.live.filter((entry) => entry.generation !== undefined && entry.generation.state === 'removed'));
    const cacheBytes = sum(this.live.filter((entry) => entry.component === 'cache'));
    const allBytes = sum(this.live);

    const stats = this.sessions.getMemoryStatistics();
    const base = this.baseline.stats;
    const registered = this.current.size;
    if (settled) {
      expectEqual(stats.sessionUsage - base.sessionUsage, sessionBytes, 'thread sessionUsage');
      expectEqual(stats.queueUsage - base.queueUsage, queueBytes, 'thread queueUsage');
      expectEqual(stats.workerUsage - base.workerUsage, workerBytes, 'thread workerUsage');
      expectEqual(stats.sessionCount - base.sessionCount, registered, 'thread sessionCount');
    }
    expectEqual(stats.cacheUsage - base.cacheUsage, cacheBytes, 'thread cacheUsage');
    expectEqual(stats.totalUsage - base.totalUsage, allBytes, 'thread totalUsage');
    expectEqual(stats.liveBuffers - base.liveBuffers, this.live.length, 'thread liveBuffers');

    const thread = this.threadNode();
    this.checkTree(thread, true);
    if (settled) expectEqual(this.orphansAtThread() - this.baseline.threadOrphans, orphanBytes, 'bytes of removed sessions at the thread node');

    if (this.options.processWide) {
      const root = this.manager.getAllocatorHierarchy();
      const underRoot = root.children.reduce((total, child) => total + child.usage, 0);
      expectEqual(root.usage, root.selfUsage + underRoot, 'root usage against its children');
      const cacheNode = root.children.find((child) => child.id === this.cache.id);
      expectEqual(cacheNode?.usage, this.cache.usage, 'message cache usage in the hierarchy');
      expectEqual(this.manager.getGlobalMemoryUsage() - this.baseline.global, allBytes, 'global usage');
      const tags = this.manager.getTagUsage() as Record<string, number>;
      for (const [tag, value] of Object.entries(tags)) {
        const expected = sum(this.live.filter((entry) => entry.tag === tag));
        expectEqual(value - this.baseline.tags[tag], expected, `tag usage ${tag}`);
      }
    }
  }

  private checkLimit(generation: Generation, which: 'session' | 'queue', handle: AllocatorHandle): void {
    const { usage, limit } = handle;
    if (limit === 0 || usage <= limit) {
      generation.overAllowed[which] = false;
    } else if (!generation.overAllowed[which]) {
      fail(`${handle.id} of ${generation.clientId} is above its limit: ${usage} > ${limit}`);
    }
  }

  /** Every node's usage is its own blocks plus its children's; the thread
   * node also carries the blocks of removed sessions, checked by the caller. */
  private checkTree(node: AllocatorNode, isThread: boolean): void {
    const below = node.children.reduce((total, child) => total + child.usage, 0);
    if (!isThread) expectEqual(node.usage, node.selfUsage + below, `usage of node ${node.id}`);
    if (node.limit !== 0 && node.usage > node.limit && node.tag !== 'SESSION' && node.tag !== 'SESSION_QUEUE') {
      fail(`node ${node.id} is above its limit`);
    }
    for (const child of node.children) this.checkTree(child, false);
  }
}
