// The process-wide session registry: the global root allocator, one
// allocator per Node thread, one session allocator (with `queue` and `worker`
// children) per client, the message cache, per-client limits and session
// expiry. One instance serves every thread of the process.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "allocator.h"

namespace mqsa {

// MQTT 5 Session Expiry Interval value meaning "never expires".
constexpr uint32_t kSessionNeverExpires = 0xFFFFFFFFu;

struct SessionOptions {
  bool has_limit = false;
  size_t limit = 0;  // 0 = unlimited
  bool has_expiry = false;
  uint32_t expiry_seconds = 0;
};

struct SessionAllocators {
  std::shared_ptr<MQTTAllocator> session;
  std::shared_ptr<MQTTAllocator> queue;
  std::shared_ptr<MQTTAllocator> worker;
};

struct ClientUsage {
  std::string client_id;
  std::string thread_id;
  size_t usage = 0;
  size_t limit = 0;
  bool connected = false;
};

struct LimitPattern {
  std::string pattern;  // `*` matches any run of characters, `?` one character
  size_t limit = 0;
};

class SessionRegistry {
 public:
  using Clock = std::chrono::steady_clock;

  // The process-wide registry. Never destroyed, because finalizers may free
  // blocks while the process exits.
  static SessionRegistry& instance();

  // A registry of its own, for tests.
  SessionRegistry();
  // Removes every child of the root. Each allocator stores its parent and
  // each parent its children, so without this the tree would never be freed.
  // Blocks still live keep their own allocators alive until they are freed.
  ~SessionRegistry();

  std::shared_ptr<MQTTAllocator> root() const { return root_; }
  std::shared_ptr<MQTTAllocator> message_cache() const { return message_cache_; }

  // Adds a thread allocator under the root, named `id` (or `id#key` when the
  // name is taken), with the current thread limit. It is confined to the
  // calling thread (see MQTTAllocator::create_confined_child), and so are
  // the sessions registered under it.
  int register_thread(const std::string& id, uint64_t& thread_key,
                      std::shared_ptr<MQTTAllocator>& out);

  // Removes the thread allocator and every session of the thread.
  int unregister_thread(uint64_t thread_key);

  // Registers `client_id` on the thread, or resumes it when the thread already
  // holds it (cancelling a pending expiry and applying the given options).
  // Returns MQ_ERR_ALLOCATOR_CREATE when another thread holds the id and its
  // session has not expired.
  int register_session(uint64_t thread_key, const std::string& client_id,
                       const SessionOptions& options, SessionAllocators& out,
                       bool& resumed);

  // Marks the session disconnected; it expires after its expiry interval.
  // With an interval of 0 it is removed at once.
  int unregister_session(uint64_t thread_key, const std::string& client_id,
                         Clock::time_point now = Clock::now());

  // Returns the allocators of a session held by the thread.
  int find_session(uint64_t thread_key, const std::string& client_id,
                   SessionAllocators& out) const;

  // Removes the session's allocators now, expired or not.
  int remove_session(uint64_t thread_key, const std::string& client_id);

  // Removes the allocators of every expired session of every thread.
  int cleanup_expired(size_t& removed, Clock::time_point now = Clock::now());

  // Sets a client's limit (0 = unlimited); applies at once to a registered
  // session and otherwise when the client registers.
  int set_client_limit(const std::string& client_id, size_t limit);
  // Forgets a limit set with set_client_limit; a registered session falls
  // back to its pattern or the default limit at once.
  int clear_client_limit(const std::string& client_id);
  // The limit the client has, or would get if it registered now.
  int client_limit(const std::string& client_id, size_t& limit) const;

  // The default and the patterns also apply at once to registered sessions
  // whose limit came from them (not from registration or set_client_limit).
  void set_default_client_limit(size_t limit);
  size_t default_client_limit() const;
  // Limits by pattern, tried in order after exact ids.
  void set_client_limit_patterns(std::vector<LimitPattern> patterns);

  // Limit of every thread allocator, existing and future (0 = unlimited).
  void set_thread_limit(size_t limit);
  size_t thread_limit() const;

  // Expiry interval used when register_session is given none.
  void set_default_expiry(uint32_t seconds);
  uint32_t default_expiry() const;

  int client_usage(const std::string& client_id, ClientUsage& out) const;
  std::vector<ClientUsage> client_usages() const;
  size_t session_count(uint64_t thread_key) const;

 private:
  // Origin of a session's limit. Limits resolved from patterns or the
  // default follow later changes of those, and the other two stay as set.
  enum class LimitSource { kResolved, kRegistration, kExact };

  struct ClientRecord {
    LimitSource limit_source = LimitSource::kResolved;
    uint64_t thread_key = 0;
    SessionAllocators allocators;
    bool connected = true;
    uint32_t expiry_seconds = 0;
    Clock::time_point expires_at;
  };
  struct ThreadRecord {
    std::shared_ptr<MQTTAllocator> allocator;
  };

  bool is_expired(const ClientRecord& record, Clock::time_point now) const;
  size_t resolve_limit(const std::string& client_id) const;
  // Applies the current patterns and default to sessions whose limit was
  // resolved from them.
  void reapply_resolved_limits();
  void remove_record(std::map<std::string, ClientRecord>::iterator it);
  ClientUsage describe(const std::string& client_id, const ClientRecord& record) const;

  std::shared_ptr<MQTTAllocator> root_;
  std::shared_ptr<MQTTAllocator> message_cache_;

  mutable std::mutex mutex_;
  uint64_t next_thread_key_ = 1;
  std::map<uint64_t, ThreadRecord> threads_;
  std::map<std::string, ClientRecord> clients_;
  std::map<std::string, size_t> exact_limits_;
  std::vector<LimitPattern> limit_patterns_;
  size_t default_client_limit_ = 0;
  size_t thread_limit_ = 0;
  uint32_t default_expiry_ = 0;
};

// Returns true when `text` matches the glob `pattern` (`*` and `?`, on
// UTF-8 characters).
bool glob_match(const std::string& pattern, const std::string& text);

}  // namespace mqsa
