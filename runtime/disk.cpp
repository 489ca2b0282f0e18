#include "runtime/disk.hpp"

#include <fcntl.h>
#include <sys/statvfs.h>
#include <unistd.h>

namespace fleetd {

namespace {

class posix_disk : public disk {
public:
  std::string vfs() const override {
    return {};
  }

  int64_t free_bytes(const std::string& dir) override {
    struct statvfs vfs;
    if (statvfs(dir.empty() ? "." : dir.c_str(), &vfs) != 0)
      return -1;
    return static_cast<int64_t>(vfs.f_bavail)
           * static_cast<int64_t>(vfs.f_frsize);
  }

  bool allocate(const std::string& path, int64_t bytes) override {
    auto fd = ::open(path.c_str(), O_WRONLY | O_CREAT, 0640);
    if (fd < 0)
      return false;
    // posix_fallocate really takes the blocks; a sparse file would not.
    auto rc = posix_fallocate(fd, 0, bytes);
    ::close(fd);
    if (rc != 0)
      ::unlink(path.c_str());
    return rc == 0;
  }

  void remove(const std::string& path) override {
    ::unlink(path.c_str());
  }
};

} // namespace

std::shared_ptr<disk> real_disk() {
  static auto instance = std::make_shared<posix_disk>();
  return instance;
}

} // namespace fleetd
