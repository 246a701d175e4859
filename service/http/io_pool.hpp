// The I/O threads: one io_context per thread (each connection lives on one of them), rather
// than one io_context shared by all threads. Work stays on the thread that owns it, so a
// request that does not touch the engine never wakes another thread.
#pragma once

#include <atomic>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <memory>
#include <thread>
#include <vector>

namespace gatherd::service {

class io_pool {
 public:
  explicit io_pool(std::size_t threads) {
    for (std::size_t i = 0; i < threads; ++i) {
      contexts_.push_back(std::make_unique<boost::asio::io_context>(1));
      guards_.emplace_back(contexts_.back()->get_executor());
    }
  }

  // The first context: listener, signals and the engine live there.
  boost::asio::io_context& main() { return *contexts_.front(); }
  // Round-robin choice for the next connection or fetch (any thread).
  boost::asio::io_context& next() {
    return *contexts_[next_.fetch_add(1, std::memory_order_relaxed) % contexts_.size()];
  }

  // One executor per thread.
  std::vector<boost::asio::any_io_executor> executors() {
    std::vector<boost::asio::any_io_executor> out;
    for (auto& ctx : contexts_) out.push_back(ctx->get_executor());
    return out;
  }

  // Runs every context, the first on the calling thread; returns when all have stopped.
  void run() {
    std::vector<std::thread> threads;
    for (std::size_t i = 1; i < contexts_.size(); ++i) {
      threads.emplace_back([ctx = contexts_[i].get()] { ctx->run(); });
    }
    contexts_.front()->run();
    for (auto& t : threads) t.join();
  }

  void stop() {
    for (auto& ctx : contexts_) ctx->stop();
  }

 private:
  std::vector<std::unique_ptr<boost::asio::io_context>> contexts_;
  std::vector<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> guards_;
  std::atomic<std::size_t> next_{0};
};

}  // namespace gatherd::service
