// Concurrency: limits under contention, concurrent child creation and
// removal, and concurrent registry use. CHECK is not thread-safe, so worker
// threads only record counts in atomics and the main thread checks them.
#include <atomic>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "allocator.h"
#include "check.h"
#include "errors.h"
#include "session_registry.h"
#include "tags.h"

namespace {

using mqsa::MQTTAllocator;
using Node = std::shared_ptr<MQTTAllocator>;

constexpr int kThreads = 8;

struct Block {
  void* ptr;
  size_t usable;
};

void release_tree(const Node& root) {
  for (const Node& child : root->children()) root->remove_child(child->id());
}

}  // namespace

// Each thread allocates 2-4 KiB blocks through its own child of one limited
// parent, keeps up to 9 of them and frees them in random order. A sampler
// thread reads the parent's usage the whole time.
TEST(threads_share_parent_limit) {
  const size_t limit = 16 * 1024;
  const int iterations = 3000;
  Node root;
  Node parent;
  CHECK_EQ(MQTTAllocator::create_root("root", MEM_TAG_ROOT, 0, root), MQ_SUCCESS);
  CHECK_EQ(root->create_child("parent", MEM_TAG_SESSION_MANAGER, limit, parent), MQ_SUCCESS);

  std::atomic<int> over_limit{0};
  std::atomic<int> unexpected_codes{0};
  std::atomic<int> refusals{0};
  std::atomic<int> successes{0};
  std::atomic<size_t> max_sampled{0};
  std::atomic<bool> done{false};
  std::vector<Node> children(kThreads);
  for (int i = 0; i < kThreads; ++i) {
    CHECK_EQ(parent->create_child("t" + std::to_string(i), MEM_TAG_SESSION, 0, children[i]),
             MQ_SUCCESS);
  }

  std::thread sampler([&] {
    while (!done.load()) {
      size_t usage = parent->usage();
      if (usage > limit) over_limit.fetch_add(1);
      if (usage > max_sampled.load()) max_sampled.store(usage);
      // Under valgrind, which runs one thread at a time, a spinning thread
      // without a yield can starve the workers for minutes.
      std::this_thread::yield();
    }
  });

  std::vector<std::thread> workers;
  for (int i = 0; i < kThreads; ++i) {
    workers.emplace_back([&, i] {
      std::mt19937 random(1234 + i);
      std::uniform_int_distribution<size_t> size_of(2048, 4095);
      std::vector<Block> kept;
      for (int n = 0; n < iterations; ++n) {
        void* ptr = nullptr;
        size_t usable = 0;
        int rc = children[i]->allocate(size_of(random), ptr, usable, nullptr);
        if (rc == MQ_SUCCESS) {
          successes.fetch_add(1);
          if (parent->usage() > limit) over_limit.fetch_add(1);
          kept.push_back({ptr, usable});
        } else if (rc == MQ_ERR_ALLOCATOR_LIMIT_EXCEEDED) {
          refusals.fetch_add(1);
        } else {
          unexpected_codes.fetch_add(1);
        }
        if (kept.size() > 8 || (!kept.empty() && random() % 3 == 0)) {
          size_t victim = random() % kept.size();
          children[i]->deallocate(kept[victim].ptr);
          kept[victim] = kept.back();
          kept.pop_back();
        }
      }
      for (const Block& block : kept) children[i]->deallocate(block.ptr);
    });
  }
  for (std::thread& worker : workers) worker.join();
  done.store(true);
  sampler.join();

  CHECK_EQ(over_limit.load(), 0);
  CHECK_EQ(unexpected_codes.load(), 0);
  CHECK(successes.load() > 0);
  // Nine blocks of at least 2 KiB pass the 16 KiB limit, so refusals come
  // even when the threads run one after another, as under valgrind.
  CHECK(refusals.load() > 0);
  CHECK(max_sampled.load() <= limit);
  CHECK(parent->peak() <= limit);
  CHECK_EQ(parent->usage(), 0u);
  CHECK_EQ(root->usage(), 0u);
  for (const Node& child : children) {
    CHECK_EQ(child->usage(), 0u);
    CHECK_EQ(child->stats().live_blocks, 0u);
  }
  release_tree(root);
}

// All threads allocate straight from one limited node, so every charge
// races on the same counter. Each thread keeps up to 12 blocks of at least
// 1 KiB, so even a thread running alone passes the 8 KiB limit.
TEST(threads_share_one_node) {
  const size_t limit = 8 * 1024;
  const int iterations = 3000;
  Node root;
  Node shared;
  CHECK_EQ(MQTTAllocator::create_root("root", MEM_TAG_ROOT, 0, root), MQ_SUCCESS);
  CHECK_EQ(root->create_child("shared", MEM_TAG_SESSION_QUEUE, limit, shared), MQ_SUCCESS);

  std::atomic<int> over_limit{0};
  std::atomic<int> refusals{0};
  std::vector<std::thread> workers;
  for (int i = 0; i < kThreads; ++i) {
    workers.emplace_back([&, i] {
      std::mt19937 random(99 + i);
      std::vector<void*> kept;
      for (int n = 0; n < iterations; ++n) {
        void* ptr = nullptr;
        size_t usable = 0;
        int rc = shared->allocate(1024 + random() % 1024, ptr, usable, nullptr);
        if (rc == MQ_SUCCESS) {
          if (shared->usage() > limit) over_limit.fetch_add(1);
          kept.push_back(ptr);
        } else {
          refusals.fetch_add(1);
        }
        if (kept.size() > 11) {
          shared->deallocate(kept.front());
          kept.erase(kept.begin());
        }
      }
      for (void* ptr : kept) shared->deallocate(ptr);
    });
  }
  for (std::thread& worker : workers) worker.join();

  CHECK_EQ(over_limit.load(), 0);
  CHECK(refusals.load() > 0);
  CHECK(shared->peak() <= limit);
  CHECK_EQ(shared->usage(), 0u);
  CHECK_EQ(shared->stats().live_blocks, 0u);
  CHECK_EQ(root->usage(), 0u);
  release_tree(root);
}

// A confined node allocates on its own thread only; its children inherit
// the thread. A refused attempt from another thread charges nothing.
TEST(threads_confined_node_allocates_on_its_thread_only) {
  Node root;
  CHECK_EQ(MQTTAllocator::create_root("root", MEM_TAG_ROOT, 0, root), MQ_SUCCESS);
  Node confined;
  CHECK_EQ(root->create_confined_child("thread", MEM_TAG_SESSION_MANAGER, 0,
                                       mqsa::calling_thread_id(), confined),
           MQ_SUCCESS);
  Node session;
  CHECK_EQ(confined->create_child("session", MEM_TAG_SESSION, 0, session), MQ_SUCCESS);
  CHECK_EQ(session->owner(), mqsa::calling_thread_id());
  CHECK_EQ(root->owner(), 0u);

  void* ptr = nullptr;
  size_t usable = 0;
  CHECK_EQ(session->allocate(100, ptr, usable, nullptr), MQ_SUCCESS);

  std::atomic<int> foreign_result{0};
  std::atomic<uint64_t> foreign_id{0};
  std::thread other([&] {
    void* foreign = nullptr;
    size_t foreign_usable = 0;
    foreign_result = session->allocate(100, foreign, foreign_usable, nullptr);
    foreign_id = mqsa::calling_thread_id();
  });
  other.join();
  CHECK_EQ(foreign_result.load(), MQ_ERR_ALLOCATOR_HIERARCHY);
  CHECK(foreign_id.load() != mqsa::calling_thread_id());
  CHECK_EQ(session->usage(), usable);
  CHECK_EQ(root->usage(), usable);
  CHECK_EQ(session->stats().total_allocations, 1u);

  CHECK_EQ(session->deallocate(ptr), MQ_SUCCESS);
  CHECK_EQ(session->usage(), 0u);
  CHECK_EQ(root->usage(), 0u);
  release_tree(root);
}

// Each thread allocates through a confined subtree of its own while all of
// them share one limited root, the only node they contend on. The root
// never passes its limit and ends at zero.
TEST(threads_confined_subtrees_share_root_limit) {
  const size_t limit = 32 * 1024;
  const int iterations = 4000;
  Node root;
  CHECK_EQ(MQTTAllocator::create_root("root", MEM_TAG_ROOT, limit, root), MQ_SUCCESS);

  std::atomic<int> failures{0};
  std::atomic<bool> over_limit{false};
  std::vector<std::thread> workers;
  for (int i = 0; i < kThreads; ++i) {
    workers.emplace_back([&, i] {
      Node own;
      if (root->create_confined_child("t" + std::to_string(i), MEM_TAG_SESSION_MANAGER, 0,
                                      mqsa::calling_thread_id(), own) != MQ_SUCCESS) {
        failures.fetch_add(1);
        return;
      }
      std::mt19937 random(static_cast<unsigned>(i));
      std::vector<Block> live_blocks;
      for (int n = 0; n < iterations; ++n) {
        if (live_blocks.size() < 6 && random() % 2 == 0) {
          Block block{nullptr, 0};
          int rc = own->allocate(512 + random() % 2048, block.ptr, block.usable, nullptr);
          if (rc == MQ_SUCCESS) live_blocks.push_back(block);
          else if (rc != MQ_ERR_ALLOCATOR_LIMIT_EXCEEDED) failures.fetch_add(1);
        } else if (!live_blocks.empty()) {
          own->deallocate(live_blocks.back().ptr, live_blocks.back().usable);
          live_blocks.pop_back();
        }
        if (root->usage() > limit) over_limit = true;
      }
      for (const Block& block : live_blocks) own->deallocate(block.ptr, block.usable);
      if (own->usage() != 0 || own->stats().live_blocks != 0) failures.fetch_add(1);
    });
  }
  for (std::thread& worker : workers) worker.join();

  CHECK_EQ(failures.load(), 0);
  CHECK(!over_limit.load());
  CHECK_EQ(root->usage(), 0u);
  CHECK(root->peak() <= limit);
  release_tree(root);
}

// Tag usage is summed over per-thread counters. Blocks allocated on threads
// that have ended, then freed on this one, still leave it exact.
TEST(threads_tag_usage_across_ended_threads) {
  Node root;
  CHECK_EQ(MQTTAllocator::create_root("root", MEM_TAG_ROOT, 0, root), MQ_SUCCESS);
  Node shared;
  CHECK_EQ(root->create_child("cache", MEM_TAG_MESSAGE_CACHE, 0, shared), MQ_SUCCESS);
  size_t before = mqsa::tag_usage(MEM_TAG_MESSAGE_CACHE);

  std::vector<Block> blocks(kThreads);
  std::vector<std::thread> workers;
  for (int i = 0; i < kThreads; ++i) {
    workers.emplace_back([&, i] {
      shared->allocate(1000 + static_cast<size_t>(i), blocks[i].ptr, blocks[i].usable, nullptr);
    });
  }
  for (std::thread& worker : workers) worker.join();

  size_t total = 0;
  for (const Block& block : blocks) total += block.usable;
  CHECK_EQ(mqsa::tag_usage(MEM_TAG_MESSAGE_CACHE), before + total);
  CHECK_EQ(shared->usage(), total);

  for (const Block& block : blocks) shared->deallocate(block.ptr, block.usable);
  CHECK_EQ(mqsa::tag_usage(MEM_TAG_MESSAGE_CACHE), before);
  CHECK_EQ(shared->usage(), 0u);
  release_tree(root);
}

// Threads create, use and remove children with ids of their own. Half of the
// time a child's block is freed only after the child was removed.
TEST(threads_create_remove_children) {
  const int rounds = 300;
  Node root;
  CHECK_EQ(MQTTAllocator::create_root("root", MEM_TAG_ROOT, 0, root), MQ_SUCCESS);

  std::atomic<int> failures{0};
  std::vector<std::thread> workers;
  for (int i = 0; i < kThreads; ++i) {
    workers.emplace_back([&, i] {
      for (int n = 0; n < rounds; ++n) {
        std::string id = "c" + std::to_string(i) + "-" + std::to_string(n);
        Node child;
        if (root->create_child(id, MEM_TAG_CLIENT, 0, child) != MQ_SUCCESS) {
          failures.fetch_add(1);
          continue;
        }
        void* ptr = nullptr;
        size_t usable = 0;
        if (child->allocate(64, ptr, usable, nullptr) != MQ_SUCCESS) failures.fetch_add(1);

        Node found;
        if (root->find_child(id, found) != MQ_SUCCESS || found != child) failures.fetch_add(1);
        root->children();

        bool free_first = n % 2 == 0;
        if (free_first && ptr != nullptr) child->deallocate(ptr);
        if (root->remove_child(id) != MQ_SUCCESS) failures.fetch_add(1);
        if (!free_first && ptr != nullptr) child->deallocate(ptr);
        if (!child->detached()) failures.fetch_add(1);
      }
    });
  }
  for (std::thread& worker : workers) worker.join();

  CHECK_EQ(failures.load(), 0);
  CHECK(root->children().empty());
  CHECK_EQ(root->usage(), 0u);
  CHECK_EQ(root->stats().total_allocations, 0u);
}

// Each thread registers sessions, allocates from their queues, disconnects
// them with an expiry already past and sometimes frees the block only after
// that. Two threads also compete for one shared client id, and a cleanup
// thread removes expired sessions the whole time.
TEST(threads_registry_churn) {
  const int rounds = 200;
  mqsa::SessionRegistry registry;
  std::atomic<int> failures{0};
  std::atomic<int> shared_taken{0};
  std::atomic<bool> done{false};
  std::atomic<size_t> cleaned{0};

  std::thread cleaner([&] {
    while (!done.load()) {
      size_t removed = 0;
      if (registry.cleanup_expired(removed) != MQ_SUCCESS) failures.fetch_add(1);
      cleaned.fetch_add(removed);
      registry.client_usages();
      std::this_thread::yield();
    }
  });

  std::vector<std::thread> workers;
  for (int i = 0; i < kThreads; ++i) {
    workers.emplace_back([&, i] {
      uint64_t key = 0;
      Node thread_allocator;
      if (registry.register_thread("thread", key, thread_allocator) != MQ_SUCCESS) {
        failures.fetch_add(1);
        return;
      }
      mqsa::SessionOptions options;
      options.has_expiry = true;
      options.expiry_seconds = 1;
      auto past = mqsa::SessionRegistry::Clock::now() - std::chrono::seconds(10);

      for (int n = 0; n < rounds; ++n) {
        std::string id = "client-" + std::to_string(i) + "-" + std::to_string(n);
        mqsa::SessionAllocators allocators;
        bool resumed = false;
        if (registry.register_session(key, id, options, allocators, resumed) != MQ_SUCCESS) {
          failures.fetch_add(1);
          continue;
        }
        void* ptr = nullptr;
        size_t usable = 0;
        if (allocators.queue->allocate(128, ptr, usable, nullptr) != MQ_SUCCESS) {
          failures.fetch_add(1);
        }
        bool free_late = n % 2 == 1;
        if (!free_late && ptr != nullptr) allocators.queue->deallocate(ptr);
        if (registry.unregister_session(key, id, past) != MQ_SUCCESS) failures.fetch_add(1);
        if (free_late && ptr != nullptr) allocators.queue->deallocate(ptr);

        // The holder's session of the shared id has always expired, so any
        // thread may take it over. The only other valid result is
        // MQ_ERR_ALLOCATOR_CREATE while a competitor has it connected.
        if (i < 2) {
          int rc = registry.register_session(key, "shared", options, allocators, resumed);
          if (rc == MQ_SUCCESS) {
            shared_taken.fetch_add(1);
            int unregistered = registry.unregister_session(key, "shared", past);
            if (unregistered != MQ_SUCCESS && unregistered != MQ_ERR_ALLOCATOR_NOT_FOUND) {
              failures.fetch_add(1);
            }
          } else if (rc != MQ_ERR_ALLOCATOR_CREATE) {
            failures.fetch_add(1);
          }
        }
      }
      if (i % 2 == 0 && registry.unregister_thread(key) != MQ_SUCCESS) failures.fetch_add(1);
    });
  }
  for (std::thread& worker : workers) worker.join();
  done.store(true);
  cleaner.join();

  size_t removed = 0;
  CHECK_EQ(registry.cleanup_expired(removed), MQ_SUCCESS);
  CHECK_EQ(failures.load(), 0);
  CHECK(shared_taken.load() > 0);
  CHECK(registry.client_usages().empty());
  CHECK_EQ(registry.root()->usage(), 0u);
}

TEST_MAIN()
