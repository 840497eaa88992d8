#pragma once
// Recycled<T, kKeep>: the storage of objects made and freed once per connection (a Session, its
// Stream, its FilterChain) is kept for the next one instead of going back to malloc. A class
// opts in by deriving from Recycled<itself>; `new` and `delete` then take and give blocks of a
// per-thread list (each worker's sessions are made and freed on its own loop thread), which
// holds at most kKeep blocks: after a burst of connections the rest go back to malloc.
//
// Only memory is recycled, never state: every object is constructed anew in its block and
// destroyed in full when freed, so nothing of one client's session can reach the next one's.
// Under AddressSanitizer a block is poisoned while it waits, so a use after free still fails.
// A subclass of a recycled class (its size differs) and a thread whose list has been torn down
// (thread exit) use plain operator new and delete.

#include <cstddef>
#include <new>

#include <sanitizer/asan_interface.h>

namespace portcullis {

namespace recycled_detail {

// The blocks of one size class on one thread, linked through their first word.
struct FreeBlocks {
  FreeBlocks(std::size_t blockSize, bool* tornFlag) : size(blockSize), torn(tornFlag) {}
  FreeBlocks(const FreeBlocks&) = delete;
  FreeBlocks& operator=(const FreeBlocks&) = delete;
  ~FreeBlocks() {
    *torn = true;
    while (head != nullptr) {
      ASAN_UNPOISON_MEMORY_REGION(head, size);
      void* next = *static_cast<void**>(head);
      ::operator delete(head);
      head = next;
    }
  }

  void* head = nullptr;
  std::size_t count = 0;
  const std::size_t size;
  bool* const torn;  // set on destruction: later frees on this thread bypass the list
};

}  // namespace recycled_detail

template <class T, std::size_t kKeep = 64>
class Recycled {
 public:
  static void* operator new(std::size_t size) {
    if (size == sizeof(T) && !torn()) {
      recycled_detail::FreeBlocks& list = blocks();
      if (void* block = list.head; block != nullptr) {
        ASAN_UNPOISON_MEMORY_REGION(block, sizeof(T));
        list.head = *static_cast<void**>(block);
        --list.count;
        return block;
      }
    }
    return ::operator new(size);
  }

  static void operator delete(void* block, std::size_t size) noexcept {
    if (block == nullptr) return;
    if (size == sizeof(T) && !torn()) {
      recycled_detail::FreeBlocks& list = blocks();
      if (list.count < kKeep) {
        *static_cast<void**>(block) = list.head;
        list.head = block;
        ++list.count;
        ASAN_POISON_MEMORY_REGION(block, sizeof(T));
        return;
      }
    }
    ::operator delete(block);
  }

  // Blocks waiting on this thread's list (tests).
  static std::size_t kept() { return torn() ? 0 : blocks().count; }

 protected:
  Recycled() = default;
  ~Recycled() = default;

 private:
  static_assert(kKeep > 0);

  static bool& torn() {
    static thread_local bool value = false;  // trivially destructible: readable at thread exit
    return value;
  }
  static recycled_detail::FreeBlocks& blocks() {
    static_assert(sizeof(T) >= sizeof(void*));
    static_assert(alignof(T) <= __STDCPP_DEFAULT_NEW_ALIGNMENT__);
    static thread_local recycled_detail::FreeBlocks list(sizeof(T), &torn());
    return list;
  }
};

}  // namespace portcullis
