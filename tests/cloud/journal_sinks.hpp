#pragma once

// A sink_backend that records what it is given, for the sink runner's and
// journal's tests (an in-process implementation of our own interface).

#include <chrono>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "cloud/sink_backend.hpp"
#include "messages/error.hpp"

namespace fleetd::test {

class recorder_sink : public sink_backend {
public:
  explicit recorder_sink(std::string name) : name_(std::move(name)) {}

  std::string name() const override {
    return name_;
  }

  caf::error write(const journal_entries& xs) override {
    std::lock_guard<std::mutex> guard{mx_};
    ++calls_;
    if (fail_next_ > 0) {
      --fail_next_;
      return make_error(ec::unreachable, "recorder told to fail");
    }
    for (auto& x : xs)
      if (refuse_.count(x.sequence) > 0)
        return make_error(ec::invalid_record, "recorder refuses sequence "
                                                + std::to_string(x.sequence));
    got_.insert(got_.end(), xs.begin(), xs.end());
    sizes_.push_back(xs.size());
    return caf::none;
  }

  /// Entries of each accepted write, in order.
  std::vector<size_t> write_sizes() const {
    std::lock_guard<std::mutex> guard{mx_};
    return sizes_;
  }

  std::chrono::milliseconds durable_after() const override {
    return durable_after_;
  }

  void watch() override {
    std::lock_guard<std::mutex> guard{mx_};
    ++watches_;
  }

  bool unchanged() override {
    std::lock_guard<std::mutex> guard{mx_};
    ++checks_;
    if (restarted_ == 0)
      return true;
    --restarted_;
    return false;
  }

  /// The next `n` restart checks say the server restarted.
  void restart_next(int n) {
    std::lock_guard<std::mutex> guard{mx_};
    restarted_ = n;
  }

  /// watch() and unchanged() calls so far.
  std::pair<int, int> watches_checks() const {
    std::lock_guard<std::mutex> guard{mx_};
    return {watches_, checks_};
  }

  /// Accepted writes count as durable only this long after (as
  /// VictoriaMetrics' in-memory rows).
  void set_durable_after(std::chrono::milliseconds d) {
    durable_after_ = d;
  }

  /// The next `n` writes fail with ec::unreachable.
  void fail_next(int n) {
    std::lock_guard<std::mutex> guard{mx_};
    fail_next_ = n;
  }

  /// Writes holding an entry of sequence `seq` are refused invalid_record.
  void refuse(int64_t seq) {
    std::lock_guard<std::mutex> guard{mx_};
    refuse_.insert(seq);
  }

  /// The sequences written so far, in order.
  std::vector<int64_t> sequences() const {
    std::lock_guard<std::mutex> guard{mx_};
    std::vector<int64_t> out;
    for (auto& x : got_)
      out.push_back(x.sequence);
    return out;
  }

  journal_entries entries() const {
    std::lock_guard<std::mutex> guard{mx_};
    return got_;
  }

  int calls() const {
    std::lock_guard<std::mutex> guard{mx_};
    return calls_;
  }

private:
  std::string name_;
  mutable std::mutex mx_;
  journal_entries got_;
  std::vector<size_t> sizes_;
  std::set<int64_t> refuse_;
  int fail_next_ = 0;
  int calls_ = 0;
  int restarted_ = 0;
  int watches_ = 0;
  int checks_ = 0;
  std::chrono::milliseconds durable_after_{0};
};

} // namespace fleetd::test
