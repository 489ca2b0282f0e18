#pragma once

#include <filesystem>
#include <stdlib.h>
#include <string>
#include <system_error>
#include <vector>

namespace fleetd::test {

/// A fresh directory under /tmp, removed with everything in it at scope exit
/// (kept when FLEETD_KEEP_TEMP is set, to look at after a failure). The one
/// temporary directory of every test.
class scratch_dir {
public:
  explicit scratch_dir(const std::string& prefix = "fleetd-test") {
    auto pattern = "/tmp/" + prefix + "-XXXXXX";
    if (::mkdtemp(pattern.data()) != nullptr)
      dir_ = pattern;
  }

  ~scratch_dir() {
    std::error_code err;
    if (!dir_.empty() && !::getenv("FLEETD_KEEP_TEMP"))
      std::filesystem::remove_all(dir_, err);
  }

  scratch_dir(const scratch_dir&) = delete;
  scratch_dir& operator=(const scratch_dir&) = delete;

  bool ok() const {
    return !dir_.empty();
  }

  /// The directory; empty when it could not be made (see ok()).
  const std::string& path() const {
    return dir_;
  }

  std::string file(const std::string& name) const {
    return dir_ + "/" + name;
  }

  /// Names of the files in the directory.
  std::vector<std::string> entries() const {
    std::vector<std::string> out;
    for (auto& e : std::filesystem::directory_iterator(dir_))
      out.push_back(e.path().filename().string());
    return out;
  }

private:
  std::string dir_;
};

} // namespace fleetd::test
