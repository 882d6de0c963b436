// ArrivalQueue: arrival order, removal from anywhere, search, moves between
// queues, and compaction.
import { ArrivalQueue } from '../../lib/aedes/arrival-queue';

interface Item {
  id: number;
  owner: object | undefined;
}

function items(count: number): Item[] {
  return Array.from({ length: count }, (_, id) => ({ id, owner: undefined }));
}

function hasId(item: Item, id: number): boolean {
  return item.id === id;
}

function ids(queue: ArrivalQueue<Item>): number[] {
  return queue.values().map((item) => item.id);
}

describe('ArrivalQueue', () => {
  test('keeps arrival order', () => {
    const queue = new ArrivalQueue<Item>();
    for (const item of items(5)) queue.push(item);

    expect(ids(queue)).toEqual([0, 1, 2, 3, 4]);
    expect(queue.size).toBe(5);
    expect(queue.first()?.id).toBe(0);
  });

  test('marks pushed and removed items', () => {
    const queue = new ArrivalQueue<Item>();
    const [item] = items(1);

    queue.push(item);
    expect(item.owner).toBe(queue);
    expect(queue.has(item)).toBe(true);
    queue.remove(item);
    expect(item.owner).toBeUndefined();
    expect(queue.has(item)).toBe(false);
    expect(queue.size).toBe(0);
    expect(queue.first()).toBeUndefined();
  });

  test('removes from the front, middle and back', () => {
    const queue = new ArrivalQueue<Item>();
    const all = items(6);
    for (const item of all) queue.push(item);

    queue.remove(all[0]);
    queue.remove(all[3]);
    queue.remove(all[5]);

    expect(ids(queue)).toEqual([1, 2, 4]);
    expect(queue.first()?.id).toBe(1);
    queue.remove(all[1]);
    queue.remove(all[2]);
    expect(queue.first()?.id).toBe(4);
    expect(queue.size).toBe(1);
  });

  test('takes new items after it emptied', () => {
    const queue = new ArrivalQueue<Item>();
    const all = items(4);
    queue.push(all[0]);
    queue.remove(all[0]);

    queue.push(all[1]);
    queue.push(all[2]);

    expect(ids(queue)).toEqual([1, 2]);
    expect(queue.first()?.id).toBe(1);
  });

  test('compacts a stuck head without losing order', () => {
    const queue = new ArrivalQueue<Item>();
    const all = items(5000);
    for (const item of all) queue.push(item);

    // The oldest item stays while every later one but the last leaves.
    for (let i = 1; i < all.length - 1; i += 1) queue.remove(all[i]);

    expect(ids(queue)).toEqual([0, 4999]);
    expect(queue.size).toBe(2);
    queue.remove(all[0]);
    expect(queue.first()?.id).toBe(4999);
  });

  test('matches a model over mixed operations', () => {
    const queue = new ArrivalQueue<Item>();
    const model: Item[] = [];
    const all = items(20000);
    let next = 0;
    let seed = 7;
    const random = (): number => {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      return seed / 2147483648;
    };

    let mismatches = 0;
    for (let step = 0; step < 30000; step += 1) {
      if (next < all.length && (model.length === 0 || random() < 0.55)) {
        queue.push(all[next]);
        model.push(all[next]);
        next += 1;
      } else if (model.length > 0) {
        // Mostly the oldest, sometimes any item.
        const index = random() < 0.7 ? 0 : Math.floor(random() * model.length);
        queue.remove(model[index]);
        model.splice(index, 1);
      }
      if (queue.size !== model.length || queue.first() !== model[0]) mismatches += 1;
    }
    expect(mismatches).toBe(0);
    expect(queue.values()).toEqual(model);
  });

  test('clear empties the queue and unmarks its items', () => {
    const queue = new ArrivalQueue<Item>();
    const all = items(3);
    for (const item of all) queue.push(item);

    queue.clear();

    expect(queue.size).toBe(0);
    expect(queue.values()).toEqual([]);
    expect(all.every((item) => item.owner === undefined)).toBe(true);
  });

  test('finds the oldest live match', () => {
    const queue = new ArrivalQueue<Item>();
    const all = items(4);
    all[3].id = 1;
    for (const item of all) queue.push(item);

    expect(queue.find(hasId, 1, undefined)).toBe(all[1]);
    queue.remove(all[1]);
    expect(queue.find(hasId, 1, undefined)).toBe(all[3]);
    expect(queue.find(hasId, 0, undefined)).toBe(all[0]);
    expect(queue.find(hasId, 9, undefined)).toBeUndefined();
  });

  test('an item moved to another queue leaves the first', () => {
    const queued = new ArrivalQueue<Item>();
    const sent = new ArrivalQueue<Item>();
    const all = items(3);
    for (const item of all) queued.push(item);

    queued.remove(all[1]);
    sent.push(all[1]);

    expect(ids(queued)).toEqual([0, 2]);
    expect(queued.find(hasId, 1, undefined)).toBeUndefined();
    expect(queued.has(all[1])).toBe(false);
    expect(sent.has(all[1])).toBe(true);
    queued.remove(all[0]);
    expect(queued.first()).toBe(all[2]);
  });
});
