// MQTTAllocator on the backend the environment selects: limits along a
// chain, usable-size accounting, tags, child ids and removal.
#include <memory>
#include <string>

#include "allocator.h"
#include "backend.h"
#include "check.h"
#include "errors.h"
#include "tags.h"

namespace {

using mqsa::LimitRefusal;
using mqsa::MQTTAllocator;
using Node = std::shared_ptr<MQTTAllocator>;

Node make_root(const std::string& id, size_t limit = 0) {
  Node root;
  int rc = MQTTAllocator::create_root(id, MEM_TAG_ROOT, limit, root);
  if (rc != MQ_SUCCESS) std::printf("  create_root(%s) returned %d\n", id.c_str(), rc);
  return root;
}

Node make_child(const Node& parent, const std::string& id, size_t limit = 0,
                int32_t tag = MEM_TAG_CLIENT) {
  Node child;
  int rc = parent->create_child(id, tag, limit, child);
  if (rc != MQ_SUCCESS) std::printf("  create_child(%s) returned %d\n", id.c_str(), rc);
  return child;
}

// A parent stores its children and each child stores its parent, so a tree
// is freed only after the children of its root are removed.
void release_tree(const Node& root) {
  for (const Node& child : root->children()) root->remove_child(child->id());
}

struct Chain {
  Node root;
  Node mid;
  Node leaf;
  ~Chain() {
    if (root) release_tree(root);
  }
};

Chain make_chain(size_t root_limit, size_t mid_limit, size_t leaf_limit) {
  Chain chain;
  chain.root = make_root("root", root_limit);
  chain.mid = make_child(chain.root, "mid", mid_limit, MEM_TAG_SESSION_MANAGER);
  chain.leaf = make_child(chain.mid, "leaf", leaf_limit, MEM_TAG_SESSION);
  return chain;
}

size_t usable_of(void* ptr) { return mqsa::Backend::instance().usable_size(ptr); }

// allocate() charges the backend's predicted size before it allocates. When
// a tool such as valgrind replaces tcmalloc's malloc but not its nallocx, the
// prediction differs from the usable size, and checks that need the two to
// agree are skipped.
bool prediction_differs(size_t size, size_t usable) {
  size_t predicted = mqsa::Backend::instance().predicted_size(size);
  if (predicted == 0 || predicted == usable) return false;
  std::printf("  skipped: the backend predicts %zu bytes for %zu but reserves %zu\n",
              predicted, size, usable);
  return true;
}

}  // namespace

// One block of usable size `held` sits on the leaf. Each level in turn gets
// a limit of held + 512 while the others are unlimited, so a 1000-byte
// request from the leaf must be refused by exactly that level.
TEST(limit_refused_at_each_level) {
  Chain chain = make_chain(0, 0, 0);
  void* held_ptr = nullptr;
  size_t held = 0;
  CHECK_EQ(chain.leaf->allocate(1000, held_ptr, held, nullptr), MQ_SUCCESS);

  const Node levels[] = {chain.leaf, chain.mid, chain.root};
  for (const Node& level : levels) {
    chain.leaf->set_limit(0);
    chain.mid->set_limit(0);
    chain.root->set_limit(0);
    level->set_limit(held + 512);
    uint64_t refusals_before = level->stats().total_refusals;

    void* ptr = nullptr;
    size_t usable = 0;
    LimitRefusal refusal;
    int rc = chain.leaf->allocate(1000, ptr, usable, &refusal);
    if (rc != MQ_ERR_ALLOCATOR_LIMIT_EXCEEDED) std::printf("  level %s\n", level->id().c_str());
    CHECK_EQ(rc, MQ_ERR_ALLOCATOR_LIMIT_EXCEEDED);
    CHECK(ptr == nullptr);
    CHECK(refusal.allocator_id == level->id());
    CHECK_EQ(refusal.tag, level->tag());
    CHECK_EQ(refusal.usage, held);
    CHECK_EQ(refusal.limit, held + 512);
    CHECK(refusal.requested >= 1000u);
    CHECK_EQ(level->stats().total_refusals, refusals_before + 1);

    CHECK_EQ(chain.leaf->usage(), held);
    CHECK_EQ(chain.mid->usage(), held);
    CHECK_EQ(chain.root->usage(), held);
    CHECK_EQ(chain.leaf->stats().live_blocks, 1u);
  }

  CHECK_EQ(chain.leaf->deallocate(held_ptr), MQ_SUCCESS);
  CHECK_EQ(chain.root->usage(), 0u);
}

TEST(limit_refusal_names_lowest_node) {
  Chain chain = make_chain(100, 100, 100);
  void* ptr = nullptr;
  size_t usable = 0;
  LimitRefusal refusal;

  CHECK_EQ(chain.leaf->allocate(4096, ptr, usable, &refusal), MQ_ERR_ALLOCATOR_LIMIT_EXCEEDED);
  CHECK(refusal.allocator_id == "leaf");
  CHECK_EQ(refusal.usage, 0u);
  CHECK_EQ(refusal.limit, 100u);
  CHECK_EQ(chain.mid->stats().total_refusals, 0u);
  CHECK_EQ(chain.root->stats().total_refusals, 0u);
}

TEST(limit_refusal_from_sibling_leaves_others) {
  Chain chain = make_chain(0, 0, 0);
  Node sibling = make_child(chain.mid, "sibling");
  void* held_ptr = nullptr;
  size_t held = 0;
  CHECK_EQ(chain.leaf->allocate(2000, held_ptr, held, nullptr), MQ_SUCCESS);
  chain.mid->set_limit(held + 100);

  void* ptr = nullptr;
  size_t usable = 0;
  LimitRefusal refusal;
  CHECK_EQ(sibling->allocate(500, ptr, usable, &refusal), MQ_ERR_ALLOCATOR_LIMIT_EXCEEDED);
  CHECK(refusal.allocator_id == "mid");
  CHECK_EQ(sibling->usage(), 0u);
  CHECK_EQ(chain.leaf->usage(), held);
  CHECK_EQ(chain.mid->usage(), held);
  CHECK_EQ(chain.root->usage(), held);

  CHECK_EQ(chain.leaf->deallocate(held_ptr), MQ_SUCCESS);
}

TEST(limit_exact_fit_accepted) {
  Chain chain = make_chain(0, 0, 0);
  void* probe = nullptr;
  size_t probe_usable = 0;
  CHECK_EQ(chain.leaf->allocate(700, probe, probe_usable, nullptr), MQ_SUCCESS);
  CHECK_EQ(chain.leaf->deallocate(probe), MQ_SUCCESS);
  if (prediction_differs(700, probe_usable)) return;

  // The same request reserves the same usable size again, so a limit of
  // exactly that size admits it.
  chain.mid->set_limit(probe_usable);
  void* ptr = nullptr;
  size_t usable = 0;
  CHECK_EQ(chain.leaf->allocate(700, ptr, usable, nullptr), MQ_SUCCESS);
  CHECK_EQ(usable, probe_usable);
  CHECK_EQ(chain.mid->usage(), chain.mid->limit());
  CHECK_EQ(chain.leaf->deallocate(ptr), MQ_SUCCESS);
}

TEST(usage_equals_usable_size) {
  Chain chain = make_chain(0, 0, 0);
  void* ptr = nullptr;
  size_t usable = 0;
  CHECK_EQ(chain.leaf->allocate(100, ptr, usable, nullptr), MQ_SUCCESS);

  CHECK(ptr != nullptr);
  CHECK_EQ(usable, usable_of(ptr));
  CHECK(usable >= 100u);
  CHECK_EQ(chain.leaf->usage(), usable);
  CHECK_EQ(chain.leaf->stats().self_usage, usable);
  CHECK_EQ(chain.mid->usage(), usable);
  CHECK_EQ(chain.mid->stats().self_usage, 0u);
  CHECK_EQ(chain.root->usage(), usable);

  CHECK_EQ(chain.leaf->deallocate(ptr), MQ_SUCCESS);
  CHECK_EQ(chain.leaf->usage(), 0u);
  CHECK_EQ(chain.leaf->stats().self_usage, 0u);
  CHECK_EQ(chain.mid->usage(), 0u);
  CHECK_EQ(chain.root->usage(), 0u);
}

TEST(peak_keeps_highest_usage) {
  Chain chain = make_chain(0, 0, 0);
  void* first = nullptr;
  void* second = nullptr;
  size_t first_usable = 0;
  size_t second_usable = 0;
  CHECK_EQ(chain.leaf->allocate(300, first, first_usable, nullptr), MQ_SUCCESS);
  CHECK_EQ(chain.leaf->allocate(5000, second, second_usable, nullptr), MQ_SUCCESS);
  CHECK_EQ(chain.leaf->deallocate(second), MQ_SUCCESS);
  CHECK_EQ(chain.leaf->deallocate(first), MQ_SUCCESS);
  CHECK_EQ(chain.leaf->usage(), 0u);
  CHECK_EQ(chain.leaf->stats().peak, chain.leaf->peak());
  CHECK_EQ(chain.leaf->peak(), first_usable + second_usable);
  CHECK_EQ(chain.root->peak(), first_usable + second_usable);
}

TEST(peak_ignores_refused_request) {
  Chain chain = make_chain(0, 1000, 0);
  void* ptr = nullptr;
  size_t usable = 0;
  CHECK_EQ(chain.leaf->allocate(4000, ptr, usable, nullptr), MQ_ERR_ALLOCATOR_LIMIT_EXCEEDED);

  CHECK_EQ(chain.leaf->peak(), 0u);
  CHECK_EQ(chain.mid->peak(), 0u);
  CHECK_EQ(chain.root->peak(), 0u);
}

TEST(live_blocks_count_own_blocks) {
  Chain chain = make_chain(0, 0, 0);
  void* a = nullptr;
  void* b = nullptr;
  size_t usable = 0;
  CHECK_EQ(chain.leaf->allocate(10, a, usable, nullptr), MQ_SUCCESS);
  CHECK_EQ(chain.leaf->allocate(20, b, usable, nullptr), MQ_SUCCESS);
  CHECK_EQ(chain.leaf->stats().live_blocks, 2u);
  CHECK_EQ(chain.mid->stats().live_blocks, 0u);

  CHECK_EQ(chain.leaf->deallocate(a), MQ_SUCCESS);
  CHECK_EQ(chain.leaf->stats().live_blocks, 1u);
  CHECK_EQ(chain.leaf->deallocate(b), MQ_SUCCESS);
  CHECK_EQ(chain.leaf->stats().live_blocks, 0u);
}

TEST(totals_only_grow) {
  Chain chain = make_chain(0, 0, 0);
  void* ptr = nullptr;
  size_t usable = 0;
  CHECK_EQ(chain.leaf->allocate(123, ptr, usable, nullptr), MQ_SUCCESS);
  CHECK_EQ(chain.leaf->stats().total_allocations, 1u);
  CHECK_EQ(chain.leaf->stats().total_requested_bytes, 123u);

  CHECK_EQ(chain.leaf->deallocate(ptr), MQ_SUCCESS);
  CHECK_EQ(chain.leaf->stats().total_allocations, 1u);
  CHECK_EQ(chain.leaf->stats().total_requested_bytes, 123u);

  CHECK_EQ(chain.leaf->allocate(77, ptr, usable, nullptr), MQ_SUCCESS);
  CHECK_EQ(chain.leaf->deallocate(ptr), MQ_SUCCESS);
  CHECK_EQ(chain.leaf->stats().total_allocations, 2u);
  CHECK_EQ(chain.leaf->stats().total_requested_bytes, 200u);
}

TEST(deallocate_needs_no_size) {
  Chain chain = make_chain(0, 0, 0);
  void* small = nullptr;
  void* large = nullptr;
  size_t small_usable = 0;
  size_t large_usable = 0;
  CHECK_EQ(chain.leaf->allocate(1, small, small_usable, nullptr), MQ_SUCCESS);
  CHECK_EQ(chain.leaf->allocate(300000, large, large_usable, nullptr), MQ_SUCCESS);
  CHECK_EQ(chain.root->usage(), small_usable + large_usable);

  CHECK_EQ(chain.leaf->deallocate(large), MQ_SUCCESS);
  CHECK_EQ(chain.root->usage(), small_usable);
  CHECK_EQ(chain.leaf->deallocate(small), MQ_SUCCESS);
  CHECK_EQ(chain.root->usage(), 0u);
}

TEST(deallocate_null_is_invalid) {
  Chain chain = make_chain(0, 0, 0);
  CHECK_EQ(chain.leaf->deallocate(nullptr), MQ_ERR_INVALID_ARGS);
  CHECK_EQ(chain.leaf->usage(), 0u);
}

TEST(tag_usage_follows_blocks) {
  Node root = make_root("root");
  Node topics = make_child(root, "topics", 0, MEM_TAG_TOPIC_TREE);
  size_t topics_before = mqsa::tag_usage(MEM_TAG_TOPIC_TREE);
  size_t root_before = mqsa::tag_usage(MEM_TAG_ROOT);

  void* ptr = nullptr;
  size_t usable = 0;
  CHECK_EQ(topics->allocate(640, ptr, usable, nullptr), MQ_SUCCESS);
  CHECK_EQ(mqsa::tag_usage(MEM_TAG_TOPIC_TREE), topics_before + usable);
  // Ancestors count the block in their usage, but the tag counter goes to
  // the tag of the allocator that made the block.
  CHECK_EQ(mqsa::tag_usage(MEM_TAG_ROOT), root_before);

  CHECK_EQ(topics->deallocate(ptr), MQ_SUCCESS);
  CHECK_EQ(mqsa::tag_usage(MEM_TAG_TOPIC_TREE), topics_before);
  release_tree(root);
}

TEST(tag_refusals_count_refusing_tag) {
  Node root = make_root("root");
  Node server = make_child(root, "server", 64, MEM_TAG_SERVER);
  uint64_t before = mqsa::tag_refusals_total(MEM_TAG_SERVER);

  void* ptr = nullptr;
  size_t usable = 0;
  CHECK_EQ(server->allocate(1000, ptr, usable, nullptr), MQ_ERR_ALLOCATOR_LIMIT_EXCEEDED);
  CHECK_EQ(mqsa::tag_refusals_total(MEM_TAG_SERVER), before + 1);
  release_tree(root);
}

TEST(child_ids_prefixes_distinct) {
  Node root = make_root("root");
  Node a = make_child(root, "a");
  Node ab = make_child(root, "ab");
  Node a_slash_b = make_child(root, "a/b");
  CHECK(a != ab);
  CHECK(a != a_slash_b);
  CHECK(ab != a_slash_b);
  CHECK_EQ(root->children().size(), 3u);

  void* ptr = nullptr;
  size_t usable = 0;
  CHECK_EQ(ab->allocate(50, ptr, usable, nullptr), MQ_SUCCESS);
  CHECK_EQ(a->usage(), 0u);
  CHECK_EQ(a_slash_b->usage(), 0u);

  CHECK_EQ(root->remove_child("a"), MQ_SUCCESS);
  Node found;
  CHECK_EQ(root->find_child("a", found), MQ_ERR_ALLOCATOR_NOT_FOUND);
  CHECK_EQ(root->find_child("ab", found), MQ_SUCCESS);
  CHECK(found == ab);
  CHECK_EQ(root->find_child("a/b", found), MQ_SUCCESS);
  CHECK(found == a_slash_b);
  CHECK(a->detached());
  CHECK(!ab->detached());
  CHECK(!a_slash_b->detached());
  CHECK_EQ(ab->usage(), usable);

  CHECK_EQ(ab->deallocate(ptr), MQ_SUCCESS);
  release_tree(root);
}

TEST(remove_child_with_live_block) {
  Chain chain = make_chain(0, 0, 0);
  Node grandchild = make_child(chain.leaf, "queue", 0, MEM_TAG_SESSION_QUEUE);
  void* ptr = nullptr;
  size_t usable = 0;
  CHECK_EQ(chain.leaf->allocate(256, ptr, usable, nullptr), MQ_SUCCESS);

  CHECK_EQ(chain.mid->remove_child("leaf"), MQ_SUCCESS);
  CHECK(chain.leaf->detached());
  CHECK(grandchild->detached());
  Node found;
  CHECK_EQ(chain.mid->find_child("leaf", found), MQ_ERR_ALLOCATOR_NOT_FOUND);
  CHECK_EQ(chain.mid->remove_child("leaf"), MQ_ERR_ALLOCATOR_NOT_FOUND);

  void* refused = nullptr;
  size_t refused_usable = 0;
  CHECK_EQ(chain.leaf->allocate(16, refused, refused_usable, nullptr),
           MQ_ERR_ALLOCATOR_NOT_FOUND);
  CHECK_EQ(grandchild->allocate(16, refused, refused_usable, nullptr),
           MQ_ERR_ALLOCATOR_NOT_FOUND);
  Node new_child;
  CHECK_EQ(chain.leaf->create_child("late", MEM_TAG_CLIENT, 0, new_child),
           MQ_ERR_ALLOCATOR_HIERARCHY);

  CHECK_EQ(chain.leaf->usage(), usable);
  CHECK_EQ(chain.mid->usage(), usable);
  CHECK_EQ(chain.root->usage(), usable);

  CHECK_EQ(chain.leaf->deallocate(ptr), MQ_SUCCESS);
  CHECK_EQ(chain.leaf->usage(), 0u);
  CHECK_EQ(chain.mid->usage(), 0u);
  CHECK_EQ(chain.root->usage(), 0u);
}

TEST(removed_node_freed_with_last_ref) {
  Chain chain = make_chain(0, 0, 0);
  std::weak_ptr<MQTTAllocator> watched = chain.leaf;
  CHECK_EQ(chain.mid->remove_child("leaf"), MQ_SUCCESS);

  chain.leaf.reset();
  CHECK(watched.expired());
}

TEST(component_removed_only_with_parent) {
  Chain chain = make_chain(0, 0, 0);
  chain.leaf->mark_component();

  CHECK_EQ(chain.mid->remove_child("leaf"), MQ_ERR_ALLOCATOR_HIERARCHY);
  CHECK(!chain.leaf->detached());
  CHECK_EQ(chain.mid->children().size(), 1u);

  CHECK_EQ(chain.root->remove_child("mid"), MQ_SUCCESS);
  CHECK(chain.leaf->detached());
}

TEST(room_counts_every_limit_after_freeing) {
  Chain chain = make_chain(0, 4096, 2048);
  void* ptr = nullptr;
  size_t usable = 0;
  CHECK_EQ(chain.leaf->allocate(1024, ptr, usable, nullptr), MQ_SUCCESS);

  CHECK(chain.leaf->has_room(2048 - usable, 0));
  CHECK(!chain.leaf->has_room(2048 - usable + 1, 0));
  // Once the block is freed, the leaf's whole limit is free.
  CHECK(chain.leaf->has_room(2048, usable));
  CHECK(!chain.leaf->has_room(2049, usable));
  // More freed than charged frees no more than the usage.
  CHECK(!chain.leaf->has_room(2049, 10 * usable));
  // The mid node's own limit counts the leaf's block too.
  CHECK(chain.mid->has_room(4096 - usable, 0));
  CHECK(!chain.mid->has_room(4096 - usable + 1, 0));

  CHECK_EQ(chain.leaf->deallocate(ptr, usable), MQ_SUCCESS);
}

TEST(removed_name_reusable) {
  Chain chain = make_chain(0, 0, 0);
  CHECK_EQ(chain.mid->remove_child("leaf"), MQ_SUCCESS);

  Node again;
  CHECK_EQ(chain.mid->create_child("leaf", MEM_TAG_SESSION, 0, again), MQ_SUCCESS);
  CHECK(again != chain.leaf);
  CHECK(!again->detached());
}

TEST(invalid_tag_rejected) {
  Node root = make_root("root");
  Node child;
  CHECK_EQ(root->create_child("x", -1, 0, child), MQ_ERR_ALLOCATOR_INVALID_TAG);
  CHECK_EQ(root->create_child("x", MEM_TAG_COUNT, 0, child), MQ_ERR_ALLOCATOR_INVALID_TAG);
  CHECK_EQ(root->create_child("x", 1000, 0, child), MQ_ERR_ALLOCATOR_INVALID_TAG);
  CHECK(child == nullptr);
  CHECK(root->children().empty());

  Node other_root;
  CHECK_EQ(MQTTAllocator::create_root("r", -1, 0, other_root), MQ_ERR_ALLOCATOR_INVALID_TAG);
  CHECK(other_root == nullptr);
}

TEST(empty_id_rejected) {
  Node root;
  CHECK_EQ(MQTTAllocator::create_root("", MEM_TAG_ROOT, 0, root), MQ_ERR_INVALID_ARGS);
  CHECK(root == nullptr);

  root = make_root("root");
  Node child;
  CHECK_EQ(root->create_child("", MEM_TAG_CLIENT, 0, child), MQ_ERR_INVALID_ARGS);
  CHECK(child == nullptr);
}

TEST(duplicate_child_id_rejected) {
  Node root = make_root("root");
  Node first = make_child(root, "client-1", 111);
  Node second;
  CHECK_EQ(root->create_child("client-1", MEM_TAG_CLIENT, 222, second), MQ_ERR_ALLOCATOR_CREATE);
  CHECK(second == nullptr);

  Node found;
  CHECK_EQ(root->find_child("client-1", found), MQ_SUCCESS);
  CHECK(found == first);
  CHECK_EQ(found->limit(), 111u);
  release_tree(root);
}

TEST(lowered_limit_frees_nothing) {
  Chain chain = make_chain(0, 0, 0);
  void* a = nullptr;
  void* b = nullptr;
  size_t a_usable = 0;
  size_t b_usable = 0;
  CHECK_EQ(chain.leaf->allocate(1000, a, a_usable, nullptr), MQ_SUCCESS);
  CHECK_EQ(chain.leaf->allocate(1000, b, b_usable, nullptr), MQ_SUCCESS);

  chain.mid->set_limit(a_usable);
  CHECK_EQ(chain.mid->limit(), a_usable);
  CHECK_EQ(chain.mid->usage(), a_usable + b_usable);
  CHECK_EQ(chain.leaf->stats().live_blocks, 2u);

  void* ptr = nullptr;
  size_t usable = 0;
  CHECK_EQ(chain.leaf->allocate(1, ptr, usable, nullptr), MQ_ERR_ALLOCATOR_LIMIT_EXCEEDED);
  CHECK_EQ(chain.mid->usage(), a_usable + b_usable);

  // Once usage is back under the limit, requests that fit succeed again.
  CHECK_EQ(chain.leaf->deallocate(b), MQ_SUCCESS);
  chain.mid->set_limit(a_usable + 4096);
  CHECK_EQ(chain.leaf->allocate(1, ptr, usable, nullptr), MQ_SUCCESS);
  CHECK_EQ(chain.leaf->deallocate(ptr), MQ_SUCCESS);
  CHECK_EQ(chain.leaf->deallocate(a), MQ_SUCCESS);
  CHECK_EQ(chain.root->usage(), 0u);
}

TEST(zero_size_allocation) {
  Chain chain = make_chain(0, 0, 0);
  void* ptr = nullptr;
  size_t usable = 0;
  CHECK_EQ(chain.leaf->allocate(0, ptr, usable, nullptr), MQ_SUCCESS);
  CHECK(ptr != nullptr);
  CHECK(usable > 0u);
  CHECK_EQ(usable, usable_of(ptr));
  CHECK_EQ(chain.root->usage(), usable);
  CHECK_EQ(chain.leaf->stats().total_requested_bytes, 0u);

  CHECK_EQ(chain.leaf->deallocate(ptr), MQ_SUCCESS);
  CHECK_EQ(chain.root->usage(), 0u);
}

TEST(zero_size_refused_by_full_limit) {
  Chain chain = make_chain(0, 0, 0);
  void* held = nullptr;
  size_t held_usable = 0;
  CHECK_EQ(chain.leaf->allocate(64, held, held_usable, nullptr), MQ_SUCCESS);
  chain.leaf->set_limit(held_usable);

  void* ptr = nullptr;
  size_t usable = 0;
  CHECK_EQ(chain.leaf->allocate(0, ptr, usable, nullptr), MQ_ERR_ALLOCATOR_LIMIT_EXCEEDED);
  CHECK(ptr == nullptr);
  CHECK_EQ(chain.leaf->usage(), held_usable);
  CHECK_EQ(chain.leaf->stats().live_blocks, 1u);

  if (ptr != nullptr) chain.leaf->deallocate(ptr);
  CHECK_EQ(chain.leaf->deallocate(held), MQ_SUCCESS);
}

TEST(unlimited_root_accepts_large_block) {
  Chain chain = make_chain(0, 0, 0);
  void* ptr = nullptr;
  size_t usable = 0;
  CHECK_EQ(chain.leaf->allocate(8u << 20, ptr, usable, nullptr), MQ_SUCCESS);
  CHECK(usable >= (8u << 20));
  CHECK_EQ(chain.leaf->deallocate(ptr), MQ_SUCCESS);
}

TEST_MAIN()
