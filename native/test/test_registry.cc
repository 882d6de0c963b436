// SessionRegistry on a local instance: threads, session ownership and
// expiry, limit precedence, glob patterns and usage listings.
#include <chrono>
#include <string>
#include <vector>

#include "allocator.h"
#include "check.h"
#include "errors.h"
#include "session_registry.h"

namespace {

using mqsa::ClientUsage;
using mqsa::SessionAllocators;
using mqsa::SessionOptions;
using mqsa::SessionRegistry;
using Clock = SessionRegistry::Clock;

uint64_t add_thread(SessionRegistry& registry, const std::string& id) {
  uint64_t key = 0;
  std::shared_ptr<mqsa::MQTTAllocator> allocator;
  int rc = registry.register_thread(id, key, allocator);
  if (rc != MQ_SUCCESS) std::printf("  register_thread(%s) returned %d\n", id.c_str(), rc);
  return key;
}

int add_session(SessionRegistry& registry, uint64_t thread, const std::string& client,
                const SessionOptions& options = SessionOptions()) {
  SessionAllocators allocators;
  bool resumed = false;
  return registry.register_session(thread, client, options, allocators, resumed);
}

SessionOptions with_expiry(uint32_t seconds) {
  SessionOptions options;
  options.has_expiry = true;
  options.expiry_seconds = seconds;
  return options;
}

SessionOptions with_limit(size_t limit) {
  SessionOptions options;
  options.has_limit = true;
  options.limit = limit;
  return options;
}

size_t session_limit(SessionRegistry& registry, uint64_t thread, const std::string& client) {
  SessionAllocators allocators;
  if (registry.find_session(thread, client, allocators) != MQ_SUCCESS) return SIZE_MAX;
  return allocators.session->limit();
}

}  // namespace

TEST(thread_register_creates_allocator) {
  SessionRegistry registry;
  uint64_t key = 0;
  std::shared_ptr<mqsa::MQTTAllocator> allocator;
  CHECK_EQ(registry.register_thread("main", key, allocator), MQ_SUCCESS);
  CHECK(key != 0u);
  CHECK(allocator != nullptr);
  CHECK(allocator->id() == "main");
  CHECK_EQ(allocator->tag(), MEM_TAG_SESSION_MANAGER);
  CHECK(allocator->parent() == registry.root());
}

TEST(thread_register_same_name_twice) {
  SessionRegistry registry;
  uint64_t first_key = 0;
  uint64_t second_key = 0;
  std::shared_ptr<mqsa::MQTTAllocator> first;
  std::shared_ptr<mqsa::MQTTAllocator> second;
  CHECK_EQ(registry.register_thread("worker", first_key, first), MQ_SUCCESS);
  CHECK_EQ(registry.register_thread("worker", second_key, second), MQ_SUCCESS);
  CHECK(first_key != second_key);
  CHECK(first != second);
  CHECK(first->id() != second->id());
}

TEST(thread_register_empty_id) {
  SessionRegistry registry;
  uint64_t key = 0;
  std::shared_ptr<mqsa::MQTTAllocator> allocator;
  CHECK_EQ(registry.register_thread("", key, allocator), MQ_ERR_INVALID_ARGS);
}

TEST(thread_unregister_unknown_key) {
  SessionRegistry registry;
  CHECK_EQ(registry.unregister_thread(12345), MQ_ERR_ALLOCATOR_NOT_FOUND);
}

TEST(thread_limit_applies_to_all) {
  SessionRegistry registry;
  std::shared_ptr<mqsa::MQTTAllocator> before;
  std::shared_ptr<mqsa::MQTTAllocator> after;
  uint64_t key = 0;
  CHECK_EQ(registry.register_thread("before", key, before), MQ_SUCCESS);
  registry.set_thread_limit(5000);
  CHECK_EQ(registry.register_thread("after", key, after), MQ_SUCCESS);

  CHECK_EQ(registry.thread_limit(), 5000u);
  CHECK_EQ(before->limit(), 5000u);
  CHECK_EQ(after->limit(), 5000u);
}

TEST(message_cache_under_root) {
  SessionRegistry registry;
  CHECK(registry.message_cache() != nullptr);
  CHECK_EQ(registry.message_cache()->tag(), MEM_TAG_MESSAGE_CACHE);
  CHECK(registry.message_cache()->parent() == registry.root());
}

TEST(session_register_new) {
  SessionRegistry registry;
  uint64_t thread = add_thread(registry, "main");
  SessionAllocators allocators;
  bool resumed = true;
  CHECK_EQ(registry.register_session(thread, "client-1", SessionOptions(), allocators, resumed),
           MQ_SUCCESS);
  CHECK(!resumed);
  CHECK(allocators.session->id() == "client-1");
  CHECK_EQ(allocators.session->tag(), MEM_TAG_SESSION);
  CHECK(allocators.queue->id() == "queue");
  CHECK_EQ(allocators.queue->tag(), MEM_TAG_SESSION_QUEUE);
  CHECK(allocators.queue->parent() == allocators.session);
  CHECK(allocators.worker->id() == "worker");
  CHECK_EQ(allocators.worker->tag(), MEM_TAG_SESSION_WORKER);
  CHECK(allocators.worker->parent() == allocators.session);
  CHECK_EQ(registry.session_count(thread), 1u);
}

TEST(session_components_not_removed_alone) {
  SessionRegistry registry;
  uint64_t thread = add_thread(registry, "main");
  CHECK_EQ(add_session(registry, thread, "client-1"), MQ_SUCCESS);
  SessionAllocators allocators;
  CHECK_EQ(registry.find_session(thread, "client-1", allocators), MQ_SUCCESS);

  CHECK_EQ(allocators.session->remove_child("queue"), MQ_ERR_ALLOCATOR_HIERARCHY);
  CHECK_EQ(allocators.session->remove_child("worker"), MQ_ERR_ALLOCATOR_HIERARCHY);
  CHECK(!allocators.queue->detached());
  CHECK(!allocators.worker->detached());
  CHECK_EQ(allocators.session->children().size(), 2u);

  CHECK_EQ(registry.remove_session(thread, "client-1"), MQ_SUCCESS);
  CHECK(allocators.queue->detached());
  CHECK(allocators.worker->detached());
}

TEST(session_register_unknown_thread) {
  SessionRegistry registry;
  CHECK_EQ(add_session(registry, 999, "client-1"), MQ_ERR_ALLOCATOR_HIERARCHY);
}

TEST(session_register_empty_id) {
  SessionRegistry registry;
  uint64_t thread = add_thread(registry, "main");
  CHECK_EQ(add_session(registry, thread, ""), MQ_ERR_INVALID_ARGS);
}

TEST(session_resume_same_thread) {
  SessionRegistry registry;
  uint64_t thread = add_thread(registry, "main");
  SessionAllocators first;
  bool resumed = false;
  CHECK_EQ(registry.register_session(thread, "c", with_expiry(60), first, resumed), MQ_SUCCESS);
  CHECK_EQ(registry.unregister_session(thread, "c"), MQ_SUCCESS);

  SessionOptions options = with_limit(4321);
  options.has_expiry = true;
  options.expiry_seconds = 5;
  SessionAllocators second;
  CHECK_EQ(registry.register_session(thread, "c", options, second, resumed), MQ_SUCCESS);
  CHECK(resumed);
  CHECK(second.session == first.session);
  CHECK(second.queue == first.queue);
  CHECK_EQ(second.session->limit(), 4321u);

  ClientUsage usage;
  CHECK_EQ(registry.client_usage("c", usage), MQ_SUCCESS);
  CHECK(usage.connected);
  CHECK_EQ(usage.limit, 4321u);
  CHECK_EQ(registry.session_count(thread), 1u);

  // The resumed session takes the new expiry of 5 s instead of 60 s.
  Clock::time_point now = Clock::now();
  CHECK_EQ(registry.unregister_session(thread, "c", now), MQ_SUCCESS);
  size_t removed = 0;
  CHECK_EQ(registry.cleanup_expired(removed, now + std::chrono::seconds(6)), MQ_SUCCESS);
  CHECK_EQ(removed, 1u);
}

TEST(session_resume_cancels_expiry) {
  SessionRegistry registry;
  uint64_t thread = add_thread(registry, "main");
  Clock::time_point now = Clock::now();
  CHECK_EQ(add_session(registry, thread, "c", with_expiry(10)), MQ_SUCCESS);
  CHECK_EQ(registry.unregister_session(thread, "c", now), MQ_SUCCESS);
  CHECK_EQ(add_session(registry, thread, "c"), MQ_SUCCESS);

  size_t removed = 0;
  CHECK_EQ(registry.cleanup_expired(removed, now + std::chrono::hours(1)), MQ_SUCCESS);
  CHECK_EQ(removed, 0u);
  CHECK_EQ(registry.session_count(thread), 1u);
}

TEST(session_held_by_other_thread) {
  SessionRegistry registry;
  uint64_t owner = add_thread(registry, "owner");
  uint64_t other = add_thread(registry, "other");
  CHECK_EQ(add_session(registry, owner, "c", with_expiry(60)), MQ_SUCCESS);

  CHECK_EQ(add_session(registry, other, "c"), MQ_ERR_ALLOCATOR_CREATE);

  // A disconnected session that has not expired is still held.
  CHECK_EQ(registry.unregister_session(owner, "c"), MQ_SUCCESS);
  CHECK_EQ(add_session(registry, other, "c"), MQ_ERR_ALLOCATOR_CREATE);
  CHECK_EQ(registry.session_count(owner), 1u);
  CHECK_EQ(registry.session_count(other), 0u);
}

TEST(session_other_thread_cannot_touch) {
  SessionRegistry registry;
  uint64_t owner = add_thread(registry, "owner");
  uint64_t other = add_thread(registry, "other");
  CHECK_EQ(add_session(registry, owner, "c"), MQ_SUCCESS);

  SessionAllocators found;
  CHECK_EQ(registry.find_session(other, "c", found), MQ_ERR_ALLOCATOR_NOT_FOUND);
  CHECK_EQ(registry.unregister_session(other, "c"), MQ_ERR_ALLOCATOR_NOT_FOUND);
  CHECK_EQ(registry.remove_session(other, "c"), MQ_ERR_ALLOCATOR_NOT_FOUND);
  CHECK_EQ(registry.find_session(owner, "c", found), MQ_SUCCESS);
}

TEST(session_taken_after_cleanup) {
  SessionRegistry registry;
  uint64_t owner = add_thread(registry, "owner");
  uint64_t other = add_thread(registry, "other");
  Clock::time_point now = Clock::now();
  SessionAllocators old;
  bool resumed = false;
  CHECK_EQ(registry.register_session(owner, "c", with_expiry(10), old, resumed), MQ_SUCCESS);
  CHECK_EQ(registry.unregister_session(owner, "c", now), MQ_SUCCESS);

  size_t removed = 0;
  CHECK_EQ(registry.cleanup_expired(removed, now + std::chrono::seconds(9)), MQ_SUCCESS);
  CHECK_EQ(removed, 0u);
  CHECK_EQ(registry.cleanup_expired(removed, now + std::chrono::seconds(10)), MQ_SUCCESS);
  CHECK_EQ(removed, 1u);
  CHECK(old.session->detached());

  SessionAllocators taken;
  CHECK_EQ(registry.register_session(other, "c", SessionOptions(), taken, resumed), MQ_SUCCESS);
  CHECK(!resumed);
  CHECK(taken.session != old.session);
  CHECK_EQ(registry.session_count(owner), 0u);
  CHECK_EQ(registry.session_count(other), 1u);
}

// register_session judges expiry by the clock, so a session whose expiry lies
// in the past can be taken before any cleanup runs.
TEST(session_taken_when_expired) {
  SessionRegistry registry;
  uint64_t owner = add_thread(registry, "owner");
  uint64_t other = add_thread(registry, "other");
  SessionAllocators old;
  bool resumed = false;
  CHECK_EQ(registry.register_session(owner, "c", with_expiry(10), old, resumed), MQ_SUCCESS);
  CHECK_EQ(registry.unregister_session(owner, "c", Clock::now() - std::chrono::seconds(11)),
           MQ_SUCCESS);

  CHECK_EQ(add_session(registry, other, "c"), MQ_SUCCESS);
  CHECK(old.session->detached());
  CHECK_EQ(registry.session_count(owner), 0u);
  CHECK_EQ(registry.unregister_session(owner, "c"), MQ_ERR_ALLOCATOR_NOT_FOUND);
}

TEST(session_never_expires) {
  SessionRegistry registry;
  uint64_t owner = add_thread(registry, "owner");
  uint64_t other = add_thread(registry, "other");
  Clock::time_point now = Clock::now();
  CHECK_EQ(add_session(registry, owner, "c", with_expiry(mqsa::kSessionNeverExpires)),
           MQ_SUCCESS);
  CHECK_EQ(registry.unregister_session(owner, "c", now - std::chrono::hours(24 * 365)),
           MQ_SUCCESS);

  size_t removed = 0;
  CHECK_EQ(registry.cleanup_expired(removed, Clock::time_point::max()), MQ_SUCCESS);
  CHECK_EQ(removed, 0u);
  CHECK_EQ(add_session(registry, other, "c"), MQ_ERR_ALLOCATOR_CREATE);
}

TEST(session_default_expiry_used) {
  SessionRegistry registry;
  registry.set_default_expiry(30);
  CHECK_EQ(registry.default_expiry(), 30u);
  uint64_t thread = add_thread(registry, "main");
  Clock::time_point now = Clock::now();
  CHECK_EQ(add_session(registry, thread, "c"), MQ_SUCCESS);
  CHECK_EQ(registry.unregister_session(thread, "c", now), MQ_SUCCESS);

  size_t removed = 0;
  CHECK_EQ(registry.cleanup_expired(removed, now + std::chrono::seconds(29)), MQ_SUCCESS);
  CHECK_EQ(removed, 0u);
  CHECK_EQ(registry.cleanup_expired(removed, now + std::chrono::seconds(30)), MQ_SUCCESS);
  CHECK_EQ(removed, 1u);
}

TEST(cleanup_counts_expired_only) {
  SessionRegistry registry;
  uint64_t thread_a = add_thread(registry, "a");
  uint64_t thread_b = add_thread(registry, "b");
  Clock::time_point now = Clock::now();
  CHECK_EQ(add_session(registry, thread_a, "short", with_expiry(5)), MQ_SUCCESS);
  CHECK_EQ(add_session(registry, thread_b, "medium", with_expiry(50)), MQ_SUCCESS);
  CHECK_EQ(add_session(registry, thread_a, "long", with_expiry(50)), MQ_SUCCESS);
  CHECK_EQ(add_session(registry, thread_b, "connected", with_expiry(0)), MQ_SUCCESS);
  CHECK_EQ(registry.unregister_session(thread_a, "short", now), MQ_SUCCESS);
  CHECK_EQ(registry.unregister_session(thread_b, "medium", now), MQ_SUCCESS);
  CHECK_EQ(registry.unregister_session(thread_a, "long", now), MQ_SUCCESS);

  size_t removed = 99;
  CHECK_EQ(registry.cleanup_expired(removed, now), MQ_SUCCESS);
  CHECK_EQ(removed, 0u);
  CHECK_EQ(registry.cleanup_expired(removed, now + std::chrono::seconds(5)), MQ_SUCCESS);
  CHECK_EQ(removed, 1u);
  CHECK_EQ(registry.cleanup_expired(removed, now + std::chrono::seconds(60)), MQ_SUCCESS);
  CHECK_EQ(removed, 2u);
  CHECK_EQ(registry.cleanup_expired(removed, Clock::time_point::max()), MQ_SUCCESS);
  CHECK_EQ(removed, 0u);
  CHECK_EQ(registry.client_usages().size(), 1u);
}

TEST(unregister_twice_keeps_expiry) {
  SessionRegistry registry;
  uint64_t thread = add_thread(registry, "main");
  Clock::time_point now = Clock::now();
  CHECK_EQ(add_session(registry, thread, "c", with_expiry(10)), MQ_SUCCESS);
  CHECK_EQ(registry.unregister_session(thread, "c", now), MQ_SUCCESS);
  CHECK_EQ(registry.unregister_session(thread, "c", now + std::chrono::seconds(100)), MQ_SUCCESS);

  size_t removed = 0;
  CHECK_EQ(registry.cleanup_expired(removed, now + std::chrono::seconds(10)), MQ_SUCCESS);
  CHECK_EQ(removed, 1u);
}

TEST(unregister_with_expiry_zero_removes_at_once) {
  SessionRegistry registry;
  uint64_t thread = add_thread(registry, "main");
  SessionAllocators allocators;
  bool resumed = false;
  CHECK_EQ(registry.register_session(thread, "gone", with_expiry(0), allocators, resumed), MQ_SUCCESS);
  CHECK_EQ(add_session(registry, thread, "kept", with_expiry(10)), MQ_SUCCESS);
  void* ptr = nullptr;
  size_t usable = 0;
  CHECK_EQ(allocators.queue->allocate(100, ptr, usable, nullptr), MQ_SUCCESS);

  CHECK_EQ(registry.unregister_session(thread, "gone"), MQ_SUCCESS);
  CHECK_EQ(registry.unregister_session(thread, "kept"), MQ_SUCCESS);

  CHECK(allocators.session->detached());
  CHECK_EQ(registry.session_count(thread), 1u);
  SessionAllocators found;
  CHECK_EQ(registry.find_session(thread, "gone", found), MQ_ERR_ALLOCATOR_NOT_FOUND);
  CHECK_EQ(registry.find_session(thread, "kept", found), MQ_SUCCESS);
  CHECK_EQ(registry.unregister_session(thread, "gone"), MQ_ERR_ALLOCATOR_NOT_FOUND);
  // A live block stays charged until it is freed.
  CHECK_EQ(allocators.session->usage(), usable);
  CHECK_EQ(allocators.queue->deallocate(ptr, usable), MQ_SUCCESS);
  CHECK_EQ(allocators.session->usage(), 0u);
  size_t removed = 99;
  CHECK_EQ(registry.cleanup_expired(removed, Clock::now()), MQ_SUCCESS);
  CHECK_EQ(removed, 0u);
}

TEST(remove_session_now) {
  SessionRegistry registry;
  uint64_t thread = add_thread(registry, "main");
  SessionAllocators allocators;
  bool resumed = false;
  CHECK_EQ(registry.register_session(thread, "c", with_expiry(3600), allocators, resumed),
           MQ_SUCCESS);

  CHECK_EQ(registry.remove_session(thread, "c"), MQ_SUCCESS);
  CHECK(allocators.session->detached());
  CHECK_EQ(registry.session_count(thread), 0u);
  ClientUsage usage;
  CHECK_EQ(registry.client_usage("c", usage), MQ_ERR_ALLOCATOR_NOT_FOUND);
}

TEST(limit_exact_beats_pattern) {
  SessionRegistry registry;
  registry.set_default_client_limit(100);
  registry.set_client_limit_patterns({{"sensor-*", 200}});
  CHECK_EQ(registry.set_client_limit("sensor-7", 300), MQ_SUCCESS);

  size_t limit = 0;
  CHECK_EQ(registry.client_limit("sensor-7", limit), MQ_SUCCESS);
  CHECK_EQ(limit, 300u);
  CHECK_EQ(registry.client_limit("sensor-8", limit), MQ_SUCCESS);
  CHECK_EQ(limit, 200u);
  CHECK_EQ(registry.client_limit("gateway", limit), MQ_SUCCESS);
  CHECK_EQ(limit, 100u);
}

TEST(limit_first_pattern_wins) {
  SessionRegistry registry;
  registry.set_client_limit_patterns({{"sensor-?", 10}, {"sensor-*", 20}, {"*", 30}});

  size_t limit = 0;
  CHECK_EQ(registry.client_limit("sensor-1", limit), MQ_SUCCESS);
  CHECK_EQ(limit, 10u);
  CHECK_EQ(registry.client_limit("sensor-12", limit), MQ_SUCCESS);
  CHECK_EQ(limit, 20u);
  CHECK_EQ(registry.client_limit("gateway", limit), MQ_SUCCESS);
  CHECK_EQ(limit, 30u);
}

TEST(limit_patterns_replaced) {
  SessionRegistry registry;
  registry.set_default_client_limit(5);
  registry.set_client_limit_patterns({{"a*", 10}});
  registry.set_client_limit_patterns({{"b*", 20}});

  size_t limit = 0;
  CHECK_EQ(registry.client_limit("abc", limit), MQ_SUCCESS);
  CHECK_EQ(limit, 5u);
  CHECK_EQ(registry.client_limit("bcd", limit), MQ_SUCCESS);
  CHECK_EQ(limit, 20u);
}

TEST(limit_default_applies) {
  SessionRegistry registry;
  registry.set_default_client_limit(2048);
  CHECK_EQ(registry.default_client_limit(), 2048u);
  uint64_t thread = add_thread(registry, "main");
  CHECK_EQ(add_session(registry, thread, "anyone"), MQ_SUCCESS);
  CHECK_EQ(session_limit(registry, thread, "anyone"), 2048u);
}

TEST(limit_pattern_applies_at_register) {
  SessionRegistry registry;
  registry.set_client_limit_patterns({{"sensor-*", 700}});
  uint64_t thread = add_thread(registry, "main");
  CHECK_EQ(add_session(registry, thread, "sensor-42"), MQ_SUCCESS);
  CHECK_EQ(session_limit(registry, thread, "sensor-42"), 700u);
}

TEST(limit_set_before_register) {
  SessionRegistry registry;
  registry.set_default_client_limit(100);
  CHECK_EQ(registry.set_client_limit("c", 777), MQ_SUCCESS);
  uint64_t thread = add_thread(registry, "main");
  CHECK_EQ(add_session(registry, thread, "c"), MQ_SUCCESS);
  CHECK_EQ(session_limit(registry, thread, "c"), 777u);
}

TEST(limit_option_beats_earlier_limit) {
  SessionRegistry registry;
  CHECK_EQ(registry.set_client_limit("c", 777), MQ_SUCCESS);
  uint64_t thread = add_thread(registry, "main");
  CHECK_EQ(add_session(registry, thread, "c", with_limit(999)), MQ_SUCCESS);
  CHECK_EQ(session_limit(registry, thread, "c"), 999u);
}

TEST(limit_set_on_live_session) {
  SessionRegistry registry;
  uint64_t thread = add_thread(registry, "main");
  SessionAllocators allocators;
  bool resumed = false;
  CHECK_EQ(registry.register_session(thread, "c", SessionOptions(), allocators, resumed),
           MQ_SUCCESS);
  void* ptr = nullptr;
  size_t usable = 0;
  CHECK_EQ(allocators.queue->allocate(1000, ptr, usable, nullptr), MQ_SUCCESS);

  CHECK_EQ(registry.set_client_limit("c", usable + 10), MQ_SUCCESS);
  CHECK_EQ(allocators.session->limit(), usable + 10);
  void* refused = nullptr;
  size_t refused_usable = 0;
  mqsa::LimitRefusal refusal;
  CHECK_EQ(allocators.worker->allocate(100, refused, refused_usable, &refusal),
           MQ_ERR_ALLOCATOR_LIMIT_EXCEEDED);
  CHECK(refusal.allocator_id == "c");
  CHECK_EQ(refusal.usage, usable);

  CHECK_EQ(allocators.queue->deallocate(ptr), MQ_SUCCESS);
}

TEST(limit_empty_client_id) {
  SessionRegistry registry;
  size_t limit = 0;
  CHECK_EQ(registry.set_client_limit("", 1), MQ_ERR_INVALID_ARGS);
  CHECK_EQ(registry.client_limit("", limit), MQ_ERR_INVALID_ARGS);
}

struct GlobCase {
  const char* pattern;
  const char* text;
  bool matches;
};

TEST(glob_match_table) {
  const GlobCase cases[] = {
      {"*", "", true},
      {"*", "anything", true},
      {"**", "x", true},
      {"", "", true},
      {"", "a", false},
      {"a", "", false},
      {"?", "", false},
      {"?", "a", true},
      {"?", "ab", false},
      {"a?c", "abc", true},
      {"a?c", "ac", false},
      {"a*c", "ac", true},
      {"a*c", "abbbc", true},
      {"a*c", "abcd", false},
      {"*c", "abcabc", true},
      {"a*b*c", "axxbyyc", true},
      {"a*b*c", "axxcyyb", false},
      {"sensor-*", "sensor-", true},
      {"sensor-*", "sensor", false},
      {"exact", "exact", true},
      {"exact", "Exact", false},
      // "é" is two bytes and "€" three in UTF-8, but `?` takes one character.
      {"caf?", "caf\xc3\xa9", true},
      {"caf??", "caf\xc3\xa9", false},
      {"?", "\xe2\x82\xac", true},
      {"??", "\xe2\x82\xac", false},
      {"*\xe2\x82\xac", "price \xe2\x82\xac", true},
      {"?-x", "\xf0\x9f\x98\x80-x", true},
      {"*?", "\xf0\x9f\x98\x80", true},
  };
  for (const GlobCase& test : cases) {
    bool result = mqsa::glob_match(test.pattern, test.text);
    if (result != test.matches) {
      std::printf("  glob_match(\"%s\", \"%s\") returned %s\n", test.pattern, test.text,
                  result ? "true" : "false");
    }
    CHECK(result == test.matches);
  }
}

TEST(prefix_ids_are_distinct) {
  SessionRegistry registry;
  uint64_t thread = add_thread(registry, "main");
  const char* const ids[] = {"a", "ab", "a/b", "a*", "a?"};
  std::vector<SessionAllocators> sessions;
  for (const char* id : ids) {
    SessionAllocators allocators;
    bool resumed = true;
    CHECK_EQ(registry.register_session(thread, id, SessionOptions(), allocators, resumed),
             MQ_SUCCESS);
    CHECK(!resumed);
    sessions.push_back(allocators);
  }
  CHECK_EQ(registry.session_count(thread), 5u);

  // The default expiry of 0 removes the session as it is unregistered.
  CHECK_EQ(registry.unregister_session(thread, "a"), MQ_SUCCESS);
  CHECK(sessions[0].session->detached());
  for (size_t i = 1; i < sessions.size(); ++i) {
    CHECK(!sessions[i].session->detached());
    SessionAllocators found;
    CHECK_EQ(registry.find_session(thread, ids[i], found), MQ_SUCCESS);
    CHECK(found.session == sessions[i].session);
  }
}

TEST(prefix_id_limits_exact) {
  SessionRegistry registry;
  CHECK_EQ(registry.set_client_limit("a", 11), MQ_SUCCESS);
  CHECK_EQ(registry.set_client_limit("a*", 22), MQ_SUCCESS);

  size_t limit = 0;
  CHECK_EQ(registry.client_limit("ab", limit), MQ_SUCCESS);
  CHECK_EQ(limit, 0u);
  CHECK_EQ(registry.client_limit("a*", limit), MQ_SUCCESS);
  CHECK_EQ(limit, 22u);
}

TEST(unregister_thread_removes_sessions) {
  SessionRegistry registry;
  uint64_t leaving = add_thread(registry, "leaving");
  uint64_t staying = add_thread(registry, "staying");
  SessionAllocators gone;
  SessionAllocators kept;
  bool resumed = false;
  CHECK_EQ(registry.register_session(leaving, "x", SessionOptions(), gone, resumed), MQ_SUCCESS);
  CHECK_EQ(add_session(registry, leaving, "y"), MQ_SUCCESS);
  CHECK_EQ(registry.register_session(staying, "z", SessionOptions(), kept, resumed), MQ_SUCCESS);

  CHECK_EQ(registry.unregister_thread(leaving), MQ_SUCCESS);
  CHECK_EQ(registry.session_count(leaving), 0u);
  CHECK(gone.session->detached());
  CHECK(gone.queue->detached());
  CHECK(!kept.session->detached());
  ClientUsage usage;
  CHECK_EQ(registry.client_usage("x", usage), MQ_ERR_ALLOCATOR_NOT_FOUND);
  CHECK_EQ(registry.client_usage("z", usage), MQ_SUCCESS);
  CHECK_EQ(registry.unregister_thread(leaving), MQ_ERR_ALLOCATOR_NOT_FOUND);

  // The freed id can be registered by the remaining thread.
  CHECK_EQ(add_session(registry, staying, "x"), MQ_SUCCESS);
}

TEST(unregister_thread_keeps_live_block) {
  SessionRegistry registry;
  uint64_t thread = add_thread(registry, "main");
  SessionAllocators allocators;
  bool resumed = false;
  CHECK_EQ(registry.register_session(thread, "c", SessionOptions(), allocators, resumed),
           MQ_SUCCESS);
  void* ptr = nullptr;
  size_t usable = 0;
  CHECK_EQ(allocators.queue->allocate(500, ptr, usable, nullptr), MQ_SUCCESS);

  CHECK_EQ(registry.unregister_thread(thread), MQ_SUCCESS);
  CHECK_EQ(registry.root()->usage(), usable);
  CHECK_EQ(allocators.queue->deallocate(ptr), MQ_SUCCESS);
  CHECK_EQ(registry.root()->usage(), 0u);
}

TEST(client_usages_lists_all) {
  SessionRegistry registry;
  uint64_t first = add_thread(registry, "first");
  uint64_t second = add_thread(registry, "second");
  SessionAllocators busy;
  bool resumed = false;
  CHECK_EQ(registry.register_session(first, "busy", with_limit(9000), busy, resumed), MQ_SUCCESS);
  CHECK_EQ(add_session(registry, first, "idle"), MQ_SUCCESS);
  CHECK_EQ(add_session(registry, second, "away", with_expiry(600)), MQ_SUCCESS);
  CHECK_EQ(registry.unregister_session(second, "away"), MQ_SUCCESS);
  void* ptr = nullptr;
  size_t usable = 0;
  CHECK_EQ(busy.queue->allocate(300, ptr, usable, nullptr), MQ_SUCCESS);

  std::vector<ClientUsage> usages = registry.client_usages();
  CHECK_EQ(usages.size(), 3u);
  bool saw_busy = false;
  bool saw_idle = false;
  bool saw_away = false;
  for (const ClientUsage& usage : usages) {
    if (usage.client_id == "busy") {
      saw_busy = true;
      CHECK(usage.thread_id == "first");
      CHECK_EQ(usage.usage, usable);
      CHECK_EQ(usage.limit, 9000u);
      CHECK(usage.connected);
    } else if (usage.client_id == "idle") {
      saw_idle = true;
      CHECK(usage.thread_id == "first");
      CHECK_EQ(usage.usage, 0u);
      CHECK(usage.connected);
    } else if (usage.client_id == "away") {
      saw_away = true;
      CHECK(usage.thread_id == "second");
      CHECK(!usage.connected);
    }
  }
  CHECK(saw_busy);
  CHECK(saw_idle);
  CHECK(saw_away);

  CHECK_EQ(busy.queue->deallocate(ptr), MQ_SUCCESS);
}

TEST(limit_default_change_reaches_sessions) {
  SessionRegistry registry;
  uint64_t thread = add_thread(registry, "thread-a");
  registry.set_client_limit("pinned", 3000);
  add_session(registry, thread, "resolved");
  add_session(registry, thread, "pinned");
  add_session(registry, thread, "optioned", with_limit(5000));

  registry.set_default_client_limit(7000);

  CHECK_EQ(session_limit(registry, thread, "resolved"), size_t(7000));
  CHECK_EQ(session_limit(registry, thread, "pinned"), size_t(3000));
  CHECK_EQ(session_limit(registry, thread, "optioned"), size_t(5000));
}

TEST(limit_pattern_change_reaches_sessions) {
  SessionRegistry registry;
  uint64_t thread = add_thread(registry, "thread-a");
  add_session(registry, thread, "sensor-1");

  registry.set_client_limit_patterns({{"sensor-*", 2048}});

  CHECK_EQ(session_limit(registry, thread, "sensor-1"), size_t(2048));
}

TEST(limit_clear_falls_back) {
  SessionRegistry registry;
  uint64_t thread = add_thread(registry, "thread-a");
  registry.set_default_client_limit(1000);
  registry.set_client_limit("c", 9000);
  add_session(registry, thread, "c");

  CHECK_EQ(registry.clear_client_limit("c"), MQ_SUCCESS);

  CHECK_EQ(session_limit(registry, thread, "c"), size_t(1000));
  size_t limit = 0;
  registry.client_limit("c", limit);
  CHECK_EQ(limit, size_t(1000));
  registry.set_default_client_limit(1500);
  CHECK_EQ(session_limit(registry, thread, "c"), size_t(1500));
  CHECK_EQ(registry.clear_client_limit(""), MQ_ERR_INVALID_ARGS);
}

TEST_MAIN()
