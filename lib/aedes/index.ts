// The Aedes integration: a persistence wrapper that bounds each client's
// session memory.
export { BoundedPersistence, createBoundedPersistence } from './bounded-persistence';
export type {
  AedesPersistence,
  BoundedPersistenceEvents,
  BoundedPersistenceOptions,
  BoundedPersistenceStats,
  ClientStoreStats,
  DisconnectEvent,
  DropEvent,
  DropReason,
  ExpiredEvent,
  OverflowAction,
  PersistenceClient,
  PersistencePacket,
  PersistenceSubscriber,
  PersistenceSubscription,
  StoredPacket,
} from './types';
