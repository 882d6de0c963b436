// Public entry point of mqtt-session-allocator.
export { ErrorCode, MemoryTag, mqttErrorString } from './codes';
export type { ErrorCodeName, MemoryTagName } from './codes';
export { MqttAllocatorError } from './errors';
export type { MqttAllocatorErrorContext } from './errors';
export { AllocatorHandle } from './allocator';
export { GlobalSessionManager } from './global-manager';
export type {
  BackendInfo,
  ClientMemoryInfo,
  GlobalSessionManagerEvents,
  LimitExceededEvent,
  LimitPatternEntry,
} from './global-manager';
export { ThreadLocalSessionManager } from './thread-manager';
export type { MemoryStats, PayloadHandle, RegisterSessionOptions, SessionRegistration } from './thread-manager';
export { SessionAllocatorManager } from './session-allocator-manager';
export type { SessionComponent } from './session-allocator-manager';
export { SessionQueue } from './session-queue';
export type { OverflowPolicy, SessionQueueEvents, SessionQueueOptions } from './session-queue';
export { formatBytes } from './hierarchy';
export type { AllocatorNode } from './hierarchy';
export { getLogger, setLogger } from './logging';
export { loadConfig, defaultConfig, ConfigError, DEFAULT_CONFIG_FILE } from './config/load-config';
export type {
  ClientLimitRule,
  ConfigErrorDetails,
  ConfiguredBackend,
  SessionAllocatorConfig,
} from './config/load-config';
export { applyConfig } from './config/apply-config';
export type { ConfigChange } from './config/apply-config';
export { parseSize, parseDuration } from './config/sizes';
export { registerPrometheusMetrics, METRIC_NAMES, DEFAULT_TOP_CLIENTS } from './metrics';
export type { PrometheusMetricsOptions, PrometheusMetricsRegistration } from './metrics';
export * from './aedes';
