// Names and lookups of a client's outgoing messages.
//
// Aedes names a message by its brokerId and brokerCounter, and an inflight
// message also by its packet id. Two messages are the same when their
// brokerIds and their brokerCounters have the same string forms, so that a
// counter of 5 and one of '5' name one message, as do a missing brokerId
// and ''.
//
// A store with few messages finds one by walking its lists, which costs less
// than keeping hash tables up to date for every message. A store with many
// builds a MessageIndex, which finds any message in constant time.

/** Returns the brokerId as messages are matched by it: a missing one
 * matches '', and one that is not a string matches its string form. */
export function sourceOf(brokerId: string | undefined): string {
  return typeof brokerId === 'string' ? brokerId : `${brokerId ?? ''}`;
}

/** Returns the key that names a message in the fallback table: brokerId and
 * brokerCounter, each compared by its string form. */
export function entryKey(brokerId: string | undefined, brokerCounter: unknown): string {
  return `${brokerId ?? ''}\u0000${brokerCounter ?? ''}`;
}

/** Returns the number that a counter of another type spells (5 for '5'),
 * or undefined when it spells none. Such a counter matches that number's
 * message, because messages are matched by the string forms of their keys. */
function numberNamedBy(brokerCounter: unknown): number | undefined {
  if (brokerCounter === undefined || brokerCounter === null) return undefined;
  const counter = Number(brokerCounter);
  return `${counter}` === `${brokerCounter}` ? counter : undefined;
}

/** The fields by which an outgoing message is found. */
export interface NamedMessage {
  /** The brokerId in its matching form (sourceOf). */
  readonly source: string;
  readonly brokerId: string | undefined;
  readonly brokerCounter: number | undefined;
  messageId: number | undefined;
}

/** Returns true when `message` is the one that `source` (from sourceOf) and
 * `brokerCounter` name. */
export function isNamed(message: NamedMessage, source: string, brokerCounter: unknown): boolean {
  if (message.source !== source) return false;
  const counter = message.brokerCounter;
  if (counter === brokerCounter) return true;
  // Two numbers that differ have different string forms, except NaN.
  if (typeof counter === 'number' && typeof brokerCounter === 'number') return counter !== counter && brokerCounter !== brokerCounter;
  return `${counter ?? ''}` === `${brokerCounter ?? ''}`;
}

/**
 * Hash tables over one client's outgoing messages: by name and, for inflight
 * messages, by packet id. A message whose counter is a number is kept under
 * that number, which costs no string per lookup, unless another broker's
 * message is already kept under it. Such a message, and one whose counter is not a
 * number, is kept under its entryKey in a fallback table instead.
 */
export class MessageIndex<T extends NamedMessage> {
  private readonly byCounter = new Map<number, T>();
  private readonly fallback = new Map<string, T>();
  private readonly byMessageId = new Map<number, T>();

  /** Adds a message that no message of the index shares a name with. */
  add(message: T): void {
    const counter = message.brokerCounter;
    if (typeof counter === 'number' && !this.byCounter.has(counter)) this.byCounter.set(counter, message);
    else this.fallback.set(entryKey(message.brokerId, counter), message);
    if (message.messageId !== undefined) this.byMessageId.set(message.messageId, message);
  }

  /** Removes a message of the index. */
  remove(message: T): void {
    const counter = message.brokerCounter;
    if (typeof counter === 'number' && this.byCounter.get(counter) === message) this.byCounter.delete(counter);
    else this.fallback.delete(entryKey(message.brokerId, counter));
    if (message.messageId !== undefined && this.byMessageId.get(message.messageId) === message) {
      this.byMessageId.delete(message.messageId);
    }
  }

  /** Returns the message that brokerId and brokerCounter name. */
  find(brokerId: string | undefined, brokerCounter: unknown): T | undefined {
    const counter = typeof brokerCounter === 'number' ? brokerCounter : numberNamedBy(brokerCounter);
    if (counter !== undefined) {
      const message = this.byCounter.get(counter);
      if (message !== undefined && message.source === sourceOf(brokerId)) return message;
    }
    return this.fallback.size === 0 ? undefined : this.fallback.get(entryKey(brokerId, brokerCounter));
  }

  /** Returns the inflight message with packet id `messageId`. */
  findByMessageId(messageId: number): T | undefined {
    return this.byMessageId.get(messageId);
  }

  /** Records that `message` now has packet id `messageId` (none when
   * undefined), replacing its old one. The caller has taken the id from any
   * message that had it. */
  setMessageId(message: T, messageId: number | undefined): void {
    if (message.messageId !== undefined && this.byMessageId.get(message.messageId) === message) {
      this.byMessageId.delete(message.messageId);
    }
    if (messageId !== undefined) this.byMessageId.set(messageId, message);
  }
}
