#pragma once

#include <filesystem>
#include <stdlib.h>
#include <string>
#include <system_error>
#include <vector>

namespace fleetd::test {

/// A fresh directory under /tmp, removed with everything in it at scope exit.
class scratch_dir {
public:
  explicit scratch_dir(const std::string& prefix = "fleetd-test") {
    auto pattern = "/tmp/" + prefix + "-XXXXXX";
    if (::mkdtemp(pattern.data()) != nullptr)
      dir_ = pattern;
  }

  ~scratch_dir() {
    std::error_code err;
    if (!dir_.empty())
      std::filesystem::remove_all(dir_, err);
  }

  scratch_dir(const scratch_dir&) = delete;
  scratch_dir& operator=(const scratch_dir&) = delete;

  bool ok() const {
    return !dir_.empty();
  }

  std::string file(const std::string& name) const {
    return (dir_ / name).string();
  }

  /// Names of the files in the directory.
  std::vector<std::string> entries() const {
    std::vector<std::string> out;
    for (auto& e : std::filesystem::directory_iterator(dir_))
      out.push_back(e.path().filename().string());
    return out;
  }

private:
  std::filesystem::path dir_;
};

} // namespace fleetd::test
