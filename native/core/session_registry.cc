#include "session_registry.h"

#include "errors.h"

namespace mqsa {
namespace {

// Length of the UTF-8 character starting at `s[i]`; 1 for a stray byte.
size_t utf8_length(const std::string& s, size_t i) {
  unsigned char c = static_cast<unsigned char>(s[i]);
  size_t length = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 1;
  return i + length <= s.size() ? length : 1;
}

}  // namespace

bool glob_match(const std::string& pattern, const std::string& text) {
  // Iterative matcher with one backtrack point: the last `*` seen.
  size_t p = 0;
  size_t t = 0;
  size_t star = std::string::npos;
  size_t star_text = 0;
  while (t < text.size()) {
    if (p < pattern.size() && pattern[p] == '*') {
      star = p++;
      star_text = t;
    } else if (p < pattern.size() && pattern[p] == '?') {
      p += 1;
      t += utf8_length(text, t);
    } else if (p < pattern.size() && pattern[p] == text[t]) {
      p += 1;
      t += 1;
    } else if (star != std::string::npos) {
      p = star + 1;
      star_text += utf8_length(text, star_text);
      t = star_text;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*') p += 1;
  return p == pattern.size();
}

SessionRegistry& SessionRegistry::instance() {
  static SessionRegistry* registry = new SessionRegistry();
  return *registry;
}

SessionRegistry::SessionRegistry() {
  MQTTAllocator::create_root("root", MEM_TAG_ROOT, 0, root_);
  root_->create_child("message_cache", MEM_TAG_MESSAGE_CACHE, 0, message_cache_);
}

SessionRegistry::~SessionRegistry() {
  for (const auto& child : root_->children()) root_->remove_child(child->id());
}

int SessionRegistry::register_thread(const std::string& id, uint64_t& thread_key,
                                     std::shared_ptr<MQTTAllocator>& out) {
  if (id.empty()) return MQ_ERR_INVALID_ARGS;

  std::lock_guard<std::mutex> lock(mutex_);
  uint64_t key = next_thread_key_++;
  std::shared_ptr<MQTTAllocator> allocator;
  // The thread allocator and the sessions below it belong to the calling
  // thread, which allocates and frees all their blocks.
  uint64_t owner = calling_thread_id();
  int rc = root_->create_confined_child(id, MEM_TAG_SESSION_MANAGER, thread_limit_, owner, allocator);
  if (rc == MQ_ERR_ALLOCATOR_CREATE) {
    rc = root_->create_confined_child(id + "#" + std::to_string(key), MEM_TAG_SESSION_MANAGER,
                                      thread_limit_, owner, allocator);
  }
  if (rc != MQ_SUCCESS) return rc;

  threads_[key].allocator = allocator;
  thread_key = key;
  out = std::move(allocator);
  return MQ_SUCCESS;
}

int SessionRegistry::unregister_thread(uint64_t thread_key) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto thread = threads_.find(thread_key);
  if (thread == threads_.end()) return MQ_ERR_ALLOCATOR_NOT_FOUND;

  for (auto it = clients_.begin(); it != clients_.end();) {
    it = it->second.thread_key == thread_key ? clients_.erase(it) : std::next(it);
  }
  int rc = root_->remove_child(thread->second.allocator->id());
  threads_.erase(thread);
  return rc;
}

bool SessionRegistry::is_expired(const ClientRecord& record, Clock::time_point now) const {
  if (record.connected || record.expiry_seconds == kSessionNeverExpires) return false;
  return record.expires_at <= now;
}

size_t SessionRegistry::resolve_limit(const std::string& client_id) const {
  auto exact = exact_limits_.find(client_id);
  if (exact != exact_limits_.end()) return exact->second;
  for (const LimitPattern& pattern : limit_patterns_) {
    if (glob_match(pattern.pattern, client_id)) return pattern.limit;
  }
  return default_client_limit_;
}

void SessionRegistry::remove_record(std::map<std::string, ClientRecord>::iterator it) {
  auto thread = threads_.find(it->second.thread_key);
  if (thread != threads_.end()) {
    thread->second.allocator->remove_child(it->first);
  }
  clients_.erase(it);
}

int SessionRegistry::register_session(uint64_t thread_key, const std::string& client_id,
                                      const SessionOptions& options,
                                      SessionAllocators& out, bool& resumed) {
  if (client_id.empty()) return MQ_ERR_INVALID_ARGS;

  std::lock_guard<std::mutex> lock(mutex_);
  auto thread = threads_.find(thread_key);
  if (thread == threads_.end()) return MQ_ERR_ALLOCATOR_HIERARCHY;

  auto existing = clients_.find(client_id);
  if (existing != clients_.end()) {
    ClientRecord& record = existing->second;
    if (record.thread_key != thread_key) {
      if (!is_expired(record, Clock::now())) return MQ_ERR_ALLOCATOR_CREATE;
      remove_record(existing);
    } else {
      // Resume: the session already belongs to this thread, as after an MQTT
      // reconnect with a persistent session.
      record.connected = true;
      if (options.has_limit) {
        record.allocators.session->set_limit(options.limit);
        record.limit_source = LimitSource::kRegistration;
      }
      if (options.has_expiry) record.expiry_seconds = options.expiry_seconds;
      out = record.allocators;
      resumed = true;
      return MQ_SUCCESS;
    }
  }

  // A limit given at registration belongs to this session only. It is not
  // remembered after the session ends, so client churn cannot grow the
  // table of exact limits.
  bool from_options = options.has_limit;
  bool exact = !from_options && exact_limits_.count(client_id) != 0;
  size_t limit = from_options ? options.limit : resolve_limit(client_id);
  SessionAllocators allocators;
  const std::shared_ptr<MQTTAllocator>& thread_allocator = thread->second.allocator;
  int rc = thread_allocator->create_child(client_id, MEM_TAG_SESSION, limit,
                                          allocators.session);
  if (rc != MQ_SUCCESS) return rc;
  rc = allocators.session->create_child("queue", MEM_TAG_SESSION_QUEUE, 0, allocators.queue);
  if (rc == MQ_SUCCESS) {
    rc = allocators.session->create_child("worker", MEM_TAG_SESSION_WORKER, 0,
                                          allocators.worker);
  }
  if (rc != MQ_SUCCESS) {
    thread_allocator->remove_child(client_id);
    return rc;
  }
  // The session's queue and worker allocators go only with the session.
  allocators.queue->mark_component();
  allocators.worker->mark_component();

  ClientRecord record;
  record.thread_key = thread_key;
  record.allocators = allocators;
  record.limit_source = from_options ? LimitSource::kRegistration
                                     : exact ? LimitSource::kExact : LimitSource::kResolved;
  record.expiry_seconds = options.has_expiry ? options.expiry_seconds : default_expiry_;
  clients_.emplace(client_id, std::move(record));
  out = std::move(allocators);
  resumed = false;
  return MQ_SUCCESS;
}

int SessionRegistry::unregister_session(uint64_t thread_key, const std::string& client_id,
                                        Clock::time_point now) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = clients_.find(client_id);
  if (it == clients_.end() || it->second.thread_key != thread_key) {
    return MQ_ERR_ALLOCATOR_NOT_FOUND;
  }

  ClientRecord& record = it->second;
  if (!record.connected) return MQ_SUCCESS;
  record.connected = false;
  // An interval of 0 ends the session with its connection, as in MQTT 5, so
  // it is not left for a cleanup to find.
  if (record.expiry_seconds == 0) {
    remove_record(it);
    return MQ_SUCCESS;
  }
  if (record.expiry_seconds != kSessionNeverExpires) {
    record.expires_at = now + std::chrono::seconds(record.expiry_seconds);
  }
  return MQ_SUCCESS;
}

int SessionRegistry::find_session(uint64_t thread_key, const std::string& client_id,
                                  SessionAllocators& out) const {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = clients_.find(client_id);
  if (it == clients_.end() || it->second.thread_key != thread_key) {
    return MQ_ERR_ALLOCATOR_NOT_FOUND;
  }

  out = it->second.allocators;
  return MQ_SUCCESS;
}

int SessionRegistry::remove_session(uint64_t thread_key, const std::string& client_id) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = clients_.find(client_id);
  if (it == clients_.end() || it->second.thread_key != thread_key) {
    return MQ_ERR_ALLOCATOR_NOT_FOUND;
  }

  remove_record(it);
  return MQ_SUCCESS;
}

int SessionRegistry::cleanup_expired(size_t& removed, Clock::time_point now) {
  std::lock_guard<std::mutex> lock(mutex_);
  removed = 0;
  for (auto it = clients_.begin(); it != clients_.end();) {
    auto next = std::next(it);
    if (is_expired(it->second, now)) {
      remove_record(it);
      removed += 1;
    }
    it = next;
  }
  return MQ_SUCCESS;
}

int SessionRegistry::set_client_limit(const std::string& client_id, size_t limit) {
  if (client_id.empty()) return MQ_ERR_INVALID_ARGS;

  std::lock_guard<std::mutex> lock(mutex_);
  exact_limits_[client_id] = limit;
  auto it = clients_.find(client_id);
  if (it != clients_.end()) {
    it->second.allocators.session->set_limit(limit);
    it->second.limit_source = LimitSource::kExact;
  }
  return MQ_SUCCESS;
}

int SessionRegistry::clear_client_limit(const std::string& client_id) {
  if (client_id.empty()) return MQ_ERR_INVALID_ARGS;

  std::lock_guard<std::mutex> lock(mutex_);
  exact_limits_.erase(client_id);
  auto it = clients_.find(client_id);
  if (it != clients_.end() && it->second.limit_source == LimitSource::kExact) {
    it->second.allocators.session->set_limit(resolve_limit(client_id));
    it->second.limit_source = LimitSource::kResolved;
  }
  return MQ_SUCCESS;
}

void SessionRegistry::reapply_resolved_limits() {
  for (auto& entry : clients_) {
    if (entry.second.limit_source != LimitSource::kResolved) continue;
    entry.second.allocators.session->set_limit(resolve_limit(entry.first));
  }
}

int SessionRegistry::client_limit(const std::string& client_id, size_t& limit) const {
  if (client_id.empty()) return MQ_ERR_INVALID_ARGS;

  std::lock_guard<std::mutex> lock(mutex_);
  auto it = clients_.find(client_id);
  limit = it != clients_.end() ? it->second.allocators.session->limit()
                               : resolve_limit(client_id);
  return MQ_SUCCESS;
}

void SessionRegistry::set_default_client_limit(size_t limit) {
  std::lock_guard<std::mutex> lock(mutex_);
  default_client_limit_ = limit;
  reapply_resolved_limits();
}

size_t SessionRegistry::default_client_limit() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return default_client_limit_;
}

void SessionRegistry::set_client_limit_patterns(std::vector<LimitPattern> patterns) {
  std::lock_guard<std::mutex> lock(mutex_);
  limit_patterns_ = std::move(patterns);
  reapply_resolved_limits();
}

void SessionRegistry::set_thread_limit(size_t limit) {
  std::lock_guard<std::mutex> lock(mutex_);
  thread_limit_ = limit;
  for (auto& entry : threads_) entry.second.allocator->set_limit(limit);
}

size_t SessionRegistry::thread_limit() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return thread_limit_;
}

void SessionRegistry::set_default_expiry(uint32_t seconds) {
  std::lock_guard<std::mutex> lock(mutex_);
  default_expiry_ = seconds;
}

uint32_t SessionRegistry::default_expiry() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return default_expiry_;
}

ClientUsage SessionRegistry::describe(const std::string& client_id,
                                      const ClientRecord& record) const {
  ClientUsage usage;
  usage.client_id = client_id;
  usage.usage = record.allocators.session->usage();
  usage.limit = record.allocators.session->limit();
  usage.connected = record.connected;
  auto thread = threads_.find(record.thread_key);
  if (thread != threads_.end()) usage.thread_id = thread->second.allocator->id();
  return usage;
}

int SessionRegistry::client_usage(const std::string& client_id, ClientUsage& out) const {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = clients_.find(client_id);
  if (it == clients_.end()) return MQ_ERR_ALLOCATOR_NOT_FOUND;

  out = describe(it->first, it->second);
  return MQ_SUCCESS;
}

std::vector<ClientUsage> SessionRegistry::client_usages() const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::vector<ClientUsage> result;
  result.reserve(clients_.size());
  for (const auto& entry : clients_) result.push_back(describe(entry.first, entry.second));
  return result;
}

size_t SessionRegistry::session_count(uint64_t thread_key) const {
  std::lock_guard<std::mutex> lock(mutex_);
  size_t count = 0;
  for (const auto& entry : clients_) count += entry.second.thread_key == thread_key ? 1 : 0;
  return count;
}

}  // namespace mqsa
