#include "runtime/page_file.hpp"

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "messages/error.hpp"
#include "runtime/sqlite.hpp"

namespace fleetd {

namespace {

caf::error os_error(const std::string& what, const std::string& path,
                    int err) {
  auto code = err == ENOSPC || err == EDQUOT ? ec::disk_full : ec::io_error;
  return make_error(code, what + " " + path + ": " + std::strerror(err));
}

caf::error misaligned(const std::string& path, int64_t offset, size_t n) {
  return make_error(ec::io_error, path + ": a write of " + std::to_string(n)
                                    + " bytes at " + std::to_string(offset)
                                    + " is not whole pages");
}

bool whole_pages(int64_t offset, size_t n) {
  return offset % page_file::page_bytes == 0
         && static_cast<int64_t>(n) % page_file::page_bytes == 0;
}

/// POSIX calls; writes go around the page cache once the file system
/// takes O_DIRECT (tmpfs, for one, does not: then through it).
class posix_page_file : public page_file {
public:
  posix_page_file(int fd, std::string path) : fd_(fd), path_(std::move(path)) {
  }
  ~posix_page_file() override {
    ::close(fd_);
  }

  caf::expected<int64_t> size() override {
    struct stat st {};
    if (::fstat(fd_, &st) != 0)
      return os_error("size of", path_, errno);
    return static_cast<int64_t>(st.st_size);
  }

  caf::expected<std::string> read(int64_t offset, int64_t n) override {
    // O_DIRECT reads want aligned buffers: reads (at open) go buffered.
    if (auto err = set_direct(false))
      return err;
    return read_at(fd_, offset, n, path_);
  }

  caf::error write(int64_t offset, const std::string& bytes) override {
    if (!whole_pages(offset, bytes.size()))
      return misaligned(path_, offset, bytes.size());
    if (can_direct_)
      set_direct(true);
    void* buf = nullptr;
    if (::posix_memalign(&buf, page_bytes, bytes.size()) != 0)
      return make_error(ec::io_error, "no memory for a write of " + path_);
    std::memcpy(buf, bytes.data(), bytes.size());
    auto err = write_all(static_cast<const char*>(buf), bytes.size(), offset);
    if (err == EINVAL && direct_) {
      // A device whose blocks are larger than a page: through the cache.
      can_direct_ = false;
      set_direct(false);
      err = write_all(static_cast<const char*>(buf), bytes.size(), offset);
    }
    std::free(buf);
    if (err != 0)
      return os_error("write of", path_, err);
    wrote_direct_ = wrote_direct_ || direct_;
    return caf::none;
  }

  caf::error sync() override {
    if (::fdatasync(fd_) != 0)
      return os_error("sync of", path_, errno);
    return caf::none;
  }

  caf::error truncate(int64_t size) override {
    if (::ftruncate(fd_, size) != 0)
      return os_error("truncate of", path_, errno);
    return caf::none;
  }

  caf::error grow(int64_t size) override {
    auto now = this->size();
    if (!now)
      return now.error();
    if (*now >= size)
      return caf::none;
    if (::fallocate(fd_, 0, *now, size - *now) == 0)
      return caf::none;
    auto err = errno;
    if (err != EOPNOTSUPP && err != ENOSYS)
      return os_error("allocate of", path_, err);
    return truncate(size);
  }

  bool direct() const override {
    return wrote_direct_;
  }

private:
  // 0 or the errno of the write that failed.
  int write_all(const char* p, size_t n, int64_t offset) {
    size_t done = 0;
    while (done < n) {
      auto r = ::pwrite(fd_, p + done, n - done,
                        offset + static_cast<int64_t>(done));
      if (r < 0 && errno == EINTR)
        continue;
      if (r < 0)
        return errno;
      done += static_cast<size_t>(r);
    }
    return 0;
  }

  caf::error set_direct(bool on) {
    if (direct_ == on)
      return caf::none;
    auto flags = ::fcntl(fd_, F_GETFL);
    if (flags < 0)
      return os_error("flags of", path_, errno);
    flags = on ? flags | O_DIRECT : flags & ~O_DIRECT;
    if (::fcntl(fd_, F_SETFL, flags) != 0) {
      // The file system does not take O_DIRECT: the page cache it is.
      can_direct_ = false;
      return on ? caf::none : os_error("flags of", path_, errno);
    }
    direct_ = on;
    return caf::none;
  }

  int fd_;
  std::string path_;
  bool can_direct_ = true;
  bool direct_ = false;
  bool wrote_direct_ = false;
};

/// Through an SQLite VFS: what a test's fault disk sees and fails.
class vfs_page_file : public page_file {
public:
  explicit vfs_page_file(sqlite::vfs_file f) : file_(std::move(f)) {
  }
  caf::expected<int64_t> size() override {
    return file_.size();
  }
  caf::expected<std::string> read(int64_t offset, int64_t n) override {
    return file_.read(offset, n);
  }
  caf::error write(int64_t offset, const std::string& bytes) override {
    if (!whole_pages(offset, bytes.size()))
      return misaligned("rounds file", offset, bytes.size());
    return file_.write(offset, bytes);
  }
  caf::error sync() override {
    return file_.sync();
  }
  caf::error truncate(int64_t size) override {
    return file_.truncate(size);
  }
  caf::error grow(int64_t size) override {
    return file_.truncate(size);
  }
  bool direct() const override {
    return false;
  }

private:
  sqlite::vfs_file file_;
};

} // namespace

caf::expected<std::string> read_at(int fd, int64_t offset, int64_t n,
                                   const std::string& path) {
  std::string out(static_cast<size_t>(n), '\0');
  size_t got = 0;
  while (got < out.size()) {
    auto r = ::pread(fd, out.data() + got, out.size() - got,
                     offset + static_cast<int64_t>(got));
    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0)
      return os_error("read of", path, errno);
    if (r == 0)
      break;
    got += static_cast<size_t>(r);
  }
  out.resize(got);
  return out;
}

caf::expected<std::unique_ptr<page_file>>
open_page_file(const std::string& path, const std::string& vfs) {
  if (!vfs.empty()) {
    auto f = sqlite::vfs_file::open(path, vfs);
    if (!f)
      return f.error();
    return std::unique_ptr<page_file>(new vfs_page_file(std::move(*f)));
  }
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0)
    return os_error("cannot open", path, errno);
  // Two writers appending to one file would interleave their records. A
  // process lock, as SQLite's VFS takes: this process may open it again.
  struct flock lk {};
  lk.l_type = F_WRLCK;
  lk.l_whence = SEEK_SET;
  if (::fcntl(fd, F_SETLK, &lk) != 0) {
    auto err = errno;
    ::close(fd);
    if (err == EACCES || err == EAGAIN)
      return make_error(ec::storage_locked,
                        path + " is held by another process");
    return os_error("cannot lock", path, err);
  }
  // A new file's directory entry is made durable with it (best effort: a
  // file system without directory sync still serves the file).
  (void) sync_dir_of(path);
  return std::unique_ptr<page_file>(new posix_page_file(fd, path));
}

caf::error sync_dir_of(const std::string& path) {
  auto slash = path.find_last_of('/');
  auto dir = slash == std::string::npos ? std::string(".")
                                        : path.substr(0, slash + 1);
  int d = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (d < 0)
    return os_error("cannot open the directory of", path, errno);
  auto rc = ::fsync(d);
  auto err = errno;
  ::close(d);
  if (rc != 0)
    return os_error("cannot sync the directory of", path, err);
  return caf::none;
}

} // namespace fleetd
