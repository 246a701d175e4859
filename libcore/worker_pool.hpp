// Threads for CPU-bound work (asyncio's run_in_executor): never the I/O threads.
// `co_await pool.run(f)` runs f on a worker and resumes the caller on its own executor.
#pragma once

#include <boost/asio/dispatch.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>
#include <exception>
#include <optional>
#include <type_traits>

#include "libcore/asio.hpp"

namespace gatherd::core {

class worker_pool {
 public:
  explicit worker_pool(std::size_t threads) : pool_(threads) {}
  ~worker_pool() { stop(); }
  worker_pool(const worker_pool&) = delete;
  worker_pool& operator=(const worker_pool&) = delete;

  // Runs `f` (which must not throw past itself unless the caller wants the exception) on a
  // worker. A cancelled caller throws before the work starts; work already started finishes.
  template <class F>
  awaitable<std::invoke_result_t<F&>> run(F f) {
    using result = std::invoke_result_t<F&>;
    auto initiate = [this](auto handler, F work) {
      auto guard = net::make_work_guard(net::get_associated_executor(handler));
      net::post(pool_,
                [h = std::move(handler), g = std::move(guard), w = std::move(work)]() mutable {
                  std::exception_ptr error;
                  std::optional<result> value;
                  try {
                    value.emplace(w());
                  } catch (...) {
                    error = std::current_exception();
                  }
                  auto ex = g.get_executor();
                  // Everything moves to the caller's thread: this worker keeps no reference to
                  // the exception (its count lives in uninstrumented libstdc++, invisible to TSan).
                  net::dispatch(ex, [h = std::move(h), error = std::move(error),
                                     v = std::move(value)]() mutable {
                    std::move(h)(error, v ? std::move(*v) : result{});
                  });
                });
    };
    co_return co_await net::async_initiate<const net::use_awaitable_t<>,
                                           void(std::exception_ptr, result)>(
        std::move(initiate), net::use_awaitable, std::move(f));
  }

  void stop() {
    pool_.stop();
    pool_.join();
  }

 private:
  net::thread_pool pool_;
};

}  // namespace gatherd::core
