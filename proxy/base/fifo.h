#pragma once
// Fifo: a first-in first-out queue that allocates nothing until the first push. libstdc++'s
// std::deque allocates its map and a first block when it is constructed, empty: two mallocs for
// every Session and Upstream, though most never queue anything (a client that does not
// pipeline). This is a vector and the index of its front; it is emptied, keeping its capacity,
// whenever the last element is popped. References stay valid until the next push (as with a
// vector, not a deque).

#include <cstddef>
#include <utility>
#include <vector>

namespace portcullis {

template <typename T>
class Fifo {
 public:
  bool empty() const { return head_ == items_.size(); }
  std::size_t size() const { return items_.size() - head_; }
  T& front() { return items_[head_]; }
  T& operator[](std::size_t i) { return items_[head_ + i]; }

  template <typename... Args>
  T& emplace_back(Args&&... args) {
    return items_.emplace_back(std::forward<Args>(args)...);
  }
  void push_back(T item) { items_.push_back(std::move(item)); }

  void pop_front() {
    items_[head_] = T();  // release what it holds now, not when the queue next empties
    if (++head_ == items_.size()) {
      clear();
    } else if (head_ >= kCompactAfter && head_ * 2 >= items_.size()) {
      // A queue that never runs dry: the popped half goes, so it is never more than twice
      // what it holds (and kCompactAfter).
      items_.erase(items_.begin(), items_.begin() + static_cast<std::ptrdiff_t>(head_));
      head_ = 0;
    }
  }
  void clear() {
    items_.clear();
    head_ = 0;
  }

 private:
  static constexpr std::size_t kCompactAfter = 32;
  std::vector<T> items_;
  std::size_t head_ = 0;
};

}  // namespace portcullis
