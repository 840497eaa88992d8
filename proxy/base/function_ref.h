#pragma once
// FunctionRef: a non-owning reference to something callable, for a callback that is called
// before the call that takes it returns. Unlike std::function it never allocates and never
// copies the callable (a lambda's captured strings stay where they are). It must not outlive
// the callable it refers to: never store one.

#include <functional>
#include <memory>
#include <type_traits>
#include <utility>

namespace portcullis {

template <class Signature>
class FunctionRef;

template <class R, class... Args>
class FunctionRef<R(Args...)> {
 public:
  // Implicit, as std::function's is: a lambda is passed where a FunctionRef is taken.
  template <class F, std::enable_if_t<!std::is_same_v<std::remove_cvref_t<F>, FunctionRef> &&
                                          std::is_invocable_r_v<R, F&, Args...>,
                                      int> = 0>
  FunctionRef(F&& f) noexcept  // NOLINT(google-explicit-constructor,hicpp-explicit-conversions)
      : callable_(const_cast<void*>(static_cast<const void*>(std::addressof(f)))),
        call_([](void* callable, Args... args) -> R {
          return std::invoke(*static_cast<std::remove_reference_t<F>*>(callable),
                             std::forward<Args>(args)...);
        }) {}

  R operator()(Args... args) const { return call_(callable_, std::forward<Args>(args)...); }

 private:
  void* callable_;
  R (*call_)(void*, Args...);
};

}  // namespace portcullis
