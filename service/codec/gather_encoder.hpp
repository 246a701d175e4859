// Writes a gather's answer while its jobs still finish. The engine reports each job as it is
// done (on its strand); the encoder writes that job's JSON on another executor, beside the
// strand, so that when the last job is done most of a 10,000-job answer is already written
// and only the rest, and the copy into input order, is left.
#pragma once

#include <fmt/format.h>

#include <boost/asio/any_io_executor.hpp>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "libcore/asio.hpp"
#include "libcore/gather.hpp"
#include "libcore/job_record.hpp"

namespace gatherd::service {

class gather_encoder : public std::enable_shared_from_this<gather_encoder> {
 public:
  using finished = std::pair<std::size_t, std::shared_ptr<const core::job_record>>;

  // `ex`: where jobs are encoded; it must run one handler at a time (an I/O thread).
  gather_encoder(boost::asio::any_io_executor ex, std::size_t count);

  // What to pass to engine::gather: hooks that hand finished jobs to this encoder, or none for
  // a gather of fewer than `encode_while_running_from` jobs (written at the end: quicker than
  // the hops between threads).
  core::gather_progress progress();
  static constexpr std::size_t encode_while_running_from = 256;

  // Once the gather returned: appends every job of `jobs` (input order) to `out`, comma
  // separated, reusing what was encoded and encoding the rest.
  core::awaitable<void> write_jobs(std::string& out, const std::vector<core::job_snapshot>& jobs);

 private:
  // From the engine strand only: jobs[index] is done; its record is final, so ex_ may read it.
  void add(std::size_t index, std::shared_ptr<const core::job_record> job);
  void encode_ready();  // on ex_

  boost::asio::any_io_executor ex_;
  std::vector<finished> staged_;  // add()'s, not handed over
  std::mutex mutex_;              // guards ready_ and the flags
  std::vector<finished> ready_;   // done, not yet encoded
  bool used_ = false;             // a batch was handed over: ex_ may have written some
  bool encoding_ = false;         // an encode_ready() is posted or running
  bool closed_ = false;           // write_jobs took over: nothing more is encoded here
  // Only ever touched on ex_ (and, once write_jobs closed the encoder, by its caller).
  fmt::memory_buffer encoded_;                           // jobs in completion order
  std::vector<std::pair<std::size_t, std::size_t>> at_;  // by index: offset, size (0: not yet)
};

}  // namespace gatherd::service
