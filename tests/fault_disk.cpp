#include "fault_disk.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cstdio>
#include <cstdlib>
#include <fstream>

#include <atomic>
#include <cstring>
#include <vector>

#include <sqlite3.h>

namespace fleetd::test {

namespace {

sqlite3_vfs* real_vfs() {
  return sqlite3_vfs_find(nullptr);
}

// One open file: our methods in front, the default VFS's file behind.
struct alignas(8) fault_file {
  sqlite3_file base;
  fault_disk* disk;
  std::string* path;
  sqlite3_file* real;
};

fault_file* self_of(sqlite3_file* f) {
  return reinterpret_cast<fault_file*>(f);
}

sqlite3_file* real_of(sqlite3_file* f) {
  return self_of(f)->real;
}

int64_t size_of(sqlite3_file* real) {
  sqlite3_int64 size = 0;
  if (real->pMethods->xFileSize(real, &size) != SQLITE_OK)
    return 0;
  return size;
}

int f_close(sqlite3_file* f) {
  auto* x = self_of(f);
  auto rc = x->real->pMethods->xClose(x->real);
  delete x->path;
  x->path = nullptr;
  return rc;
}

int f_read(sqlite3_file* f, void* buf, int amount, sqlite3_int64 offset) {
  if (auto rc = self_of(f)->disk->on_read(); rc != SQLITE_OK)
    return rc;
  auto* real = real_of(f);
  return real->pMethods->xRead(real, buf, amount, offset);
}

int f_write(sqlite3_file* f, const void* buf, int amount,
            sqlite3_int64 offset) {
  auto* x = self_of(f);
  auto rc = x->disk->on_write(*x->path, offset, buf, amount,
                              size_of(x->real), x->real);
  if (rc != SQLITE_OK)
    return rc;
  return x->real->pMethods->xWrite(x->real, buf, amount, offset);
}

int f_truncate(sqlite3_file* f, sqlite3_int64 size) {
  auto* x = self_of(f);
  auto rc = x->disk->on_truncate(*x->path, size, size_of(x->real), x->real);
  if (rc != SQLITE_OK)
    return rc;
  return x->real->pMethods->xTruncate(x->real, size);
}

int f_sync(sqlite3_file* f, int flags) {
  auto* x = self_of(f);
  // Synced first, then forgotten: a cut after this keeps these bytes.
  if (x->disk->power_cut())
    return SQLITE_IOERR_FSYNC;
  auto rc = x->real->pMethods->xSync(x->real, flags);
  if (rc != SQLITE_OK)
    return rc;
  return x->disk->on_sync(*x->path);
}

// The rest goes straight to the real file.
int f_file_size(sqlite3_file* f, sqlite3_int64* size) {
  return real_of(f)->pMethods->xFileSize(real_of(f), size);
}
int f_lock(sqlite3_file* f, int lock) {
  return real_of(f)->pMethods->xLock(real_of(f), lock);
}
int f_unlock(sqlite3_file* f, int lock) {
  return real_of(f)->pMethods->xUnlock(real_of(f), lock);
}
int f_check_reserved(sqlite3_file* f, int* out) {
  return real_of(f)->pMethods->xCheckReservedLock(real_of(f), out);
}
int f_file_control(sqlite3_file* f, int op, void* arg) {
  return real_of(f)->pMethods->xFileControl(real_of(f), op, arg);
}
int f_sector_size(sqlite3_file* f) {
  return real_of(f)->pMethods->xSectorSize(real_of(f));
}
int f_device(sqlite3_file* f) {
  return real_of(f)->pMethods->xDeviceCharacteristics(real_of(f));
}
int f_shm_map(sqlite3_file* f, int page, int size, int extend,
              void volatile** out) {
  return real_of(f)->pMethods->xShmMap(real_of(f), page, size, extend, out);
}
int f_shm_lock(sqlite3_file* f, int offset, int n, int flags) {
  return real_of(f)->pMethods->xShmLock(real_of(f), offset, n, flags);
}
void f_shm_barrier(sqlite3_file* f) {
  real_of(f)->pMethods->xShmBarrier(real_of(f));
}
int f_shm_unmap(sqlite3_file* f, int del) {
  return real_of(f)->pMethods->xShmUnmap(real_of(f), del);
}

// Version 2: shared memory for WAL, but no memory-mapped I/O, so every byte
// of the database goes through f_read and f_write.
const sqlite3_io_methods io_methods = {
  2,           f_close,        f_read,         f_write,
  f_truncate,  f_sync,         f_file_size,    f_lock,
  f_unlock,    f_check_reserved, f_file_control, f_sector_size,
  f_device,    f_shm_map,      f_shm_lock,     f_shm_barrier,
  f_shm_unmap, nullptr,        nullptr};

// What the disk knows a file by: its inode, which a rename keeps; the
// name for one that does not exist (yet).
std::string key_of(const char* name) {
  struct stat st;
  if (name == nullptr || ::stat(name, &st) != 0)
    return name != nullptr ? name : "";
  return "ino:" + std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino);
}

fault_disk* disk_of(sqlite3_vfs* vfs) {
  return static_cast<fault_disk*>(vfs->pAppData);
}

int v_open(sqlite3_vfs* vfs, const char* name, sqlite3_file* f, int flags,
           int* out_flags) {
  auto* x = self_of(f);
  x->base.pMethods = nullptr;
  x->disk = disk_of(vfs);
  x->real = reinterpret_cast<sqlite3_file*>(reinterpret_cast<char*>(f)
                                            + sizeof(fault_file));
  auto* r = real_vfs();
  auto rc = r->xOpen(r, name, x->real, flags, out_flags);
  if (rc != SQLITE_OK || x->real->pMethods == nullptr)
    return rc;
  x->path = new std::string(key_of(name));
  x->disk->on_open(*x->path, name != nullptr ? name : "", size_of(x->real));
  x->base.pMethods = &io_methods;
  return SQLITE_OK;
}

int v_delete(sqlite3_vfs* vfs, const char* name, int sync_dir) {
  auto* d = disk_of(vfs);
  if (d->power_cut())
    return SQLITE_IOERR_DELETE;
  auto* r = real_vfs();
  auto key = key_of(name);
  auto rc = r->xDelete(r, name, sync_dir);
  if (rc == SQLITE_OK || rc == SQLITE_IOERR_DELETE_NOENT)
    d->on_delete(key);
  return rc;
}

int v_access(sqlite3_vfs*, const char* name, int flags, int* out) {
  auto* r = real_vfs();
  return r->xAccess(r, name, flags, out);
}
int v_full_pathname(sqlite3_vfs*, const char* name, int n, char* out) {
  auto* r = real_vfs();
  return r->xFullPathname(r, name, n, out);
}
int v_randomness(sqlite3_vfs*, int n, char* out) {
  auto* r = real_vfs();
  return r->xRandomness(r, n, out);
}
int v_sleep(sqlite3_vfs*, int us) {
  auto* r = real_vfs();
  return r->xSleep(r, us);
}
int v_current_time(sqlite3_vfs*, double* out) {
  auto* r = real_vfs();
  return r->xCurrentTime(r, out);
}
int v_last_error(sqlite3_vfs*, int n, char* out) {
  auto* r = real_vfs();
  return r->xGetLastError(r, n, out);
}
int v_current_time64(sqlite3_vfs*, sqlite3_int64* out) {
  auto* r = real_vfs();
  return r->xCurrentTimeInt64(r, out);
}

} // namespace

// The VFS of one disk; its address must not move while it is registered.
struct fault_disk::registration {
  sqlite3_vfs vfs;
  std::string name;
};

fault_disk::fault_disk() : reg_(std::make_unique<registration>()) {
  // nop
}

std::shared_ptr<fault_disk> fault_disk::make(int64_t capacity) {
  static std::atomic<int> next{0};
  std::shared_ptr<fault_disk> d{new fault_disk};
  d->capacity_ = capacity;
  auto& reg = *d->reg_;
  reg.name = "fleetd-fault-" + std::to_string(++next);
  auto* r = real_vfs();
  auto& v = reg.vfs;
  std::memset(&v, 0, sizeof(v));
  v.iVersion = 2;
  v.szOsFile = static_cast<int>(sizeof(fault_file)) + r->szOsFile;
  v.mxPathname = r->mxPathname;
  v.zName = reg.name.c_str();
  v.pAppData = d.get();
  v.xOpen = v_open;
  v.xDelete = v_delete;
  v.xAccess = v_access;
  v.xFullPathname = v_full_pathname;
  v.xRandomness = v_randomness;
  v.xSleep = v_sleep;
  v.xCurrentTime = v_current_time;
  v.xGetLastError = v_last_error;
  v.xCurrentTimeInt64 = v_current_time64;
  sqlite3_vfs_register(&v, 0);
  return d;
}

fault_disk::~fault_disk() {
  sqlite3_vfs_unregister(&reg_->vfs);
  for (auto& entry : undo_)
    if (entry.second.fd >= 0)
      ::close(entry.second.fd);
}

std::string fault_disk::vfs() const {
  return reg_->name;
}

int64_t fault_disk::total() const {
  int64_t used = 0;
  for (auto& kv : sizes_)
    used += kv.second;
  return used;
}

int64_t fault_disk::free_bytes(const std::string& dir) {
  std::lock_guard<std::mutex> guard{mtx_};
  if (capacity_ < 0)
    return real_disk()->free_bytes(dir);
  return std::max<int64_t>(0, capacity_ - total());
}

bool fault_disk::allocate(const std::string& path, int64_t bytes) {
  std::lock_guard<std::mutex> guard{mtx_};
  if (dead_ || (capacity_ >= 0 && total() + bytes > capacity_))
    return false;
  sizes_[path] = bytes;
  return true;
}

void fault_disk::remove(const std::string& path) {
  auto key = key_of(path.c_str());
  ::unlink(path.c_str());
  std::lock_guard<std::mutex> guard{mtx_};
  sizes_.erase(path);
  sizes_.erase(key);
  if (auto i = undo_.find(key); i != undo_.end()) {
    if (i->second.fd >= 0)
      ::close(i->second.fd);
    undo_.erase(i);
  }
}

void fault_disk::set_capacity(int64_t bytes) {
  std::lock_guard<std::mutex> guard{mtx_};
  capacity_ = bytes;
}

int64_t fault_disk::used() const {
  std::lock_guard<std::mutex> guard{mtx_};
  return total();
}

void fault_disk::fail_reads(bool on) {
  std::lock_guard<std::mutex> guard{mtx_};
  fail_reads_ = on;
}

void fault_disk::fail_writes(bool on) {
  std::lock_guard<std::mutex> guard{mtx_};
  fail_writes_ = on;
}

void fault_disk::fail_syncs(bool on) {
  std::lock_guard<std::mutex> guard{mtx_};
  fail_syncs_ = on;
}

void fault_disk::cut_power_after_writes(int64_t n) {
  std::lock_guard<std::mutex> guard{mtx_};
  cut_countdown_ = n;
}

void fault_disk::cut_power() {
  std::lock_guard<std::mutex> guard{mtx_};
  undo_unsynced();
}

bool fault_disk::power_cut() const {
  std::lock_guard<std::mutex> guard{mtx_};
  return dead_;
}

void fault_disk::revive() {
  std::lock_guard<std::mutex> guard{mtx_};
  dead_ = false;
  cut_countdown_ = 0;
}

int64_t fault_disk::writes() const {
  std::lock_guard<std::mutex> guard{mtx_};
  return writes_;
}

int64_t fault_disk::syncs() const {
  std::lock_guard<std::mutex> guard{mtx_};
  return syncs_;
}

void fault_disk::on_open(const std::string& key, const std::string& path,
                         int64_t size) {
  std::lock_guard<std::mutex> guard{mtx_};
  sizes_[key] = size;
  // What a file holds when opened counts as synced.
  if (undo_.count(key) == 0) {
    auto& log = undo_[key];
    log.synced_size = size;
    if (!path.empty())
      log.fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  }
}

void fault_disk::on_delete(const std::string& key) {
  std::lock_guard<std::mutex> guard{mtx_};
  sizes_.erase(key);
  if (auto i = undo_.find(key); i != undo_.end()) {
    if (i->second.fd >= 0)
      ::close(i->second.fd);
    undo_.erase(i);
  }
}

int fault_disk::on_read() {
  std::lock_guard<std::mutex> guard{mtx_};
  return fail_reads_ ? SQLITE_IOERR_READ : SQLITE_OK;
}

int fault_disk::on_write(const std::string& path, int64_t offset,
                         const void*, int amount, int64_t size_before,
                         void* real) {
  std::lock_guard<std::mutex> guard{mtx_};
  ++writes_;
  if (cut_countdown_ > 0 && --cut_countdown_ == 0)
    undo_unsynced();
  if (dead_ || fail_writes_)
    return SQLITE_IOERR_WRITE;
  int64_t end = offset + amount;
  int64_t growth = std::max<int64_t>(0, end - size_before);
  if (capacity_ >= 0 && total() + growth > capacity_)
    return SQLITE_FULL;
  sizes_[path] = std::max(size_before, end);
  keep_old(path, offset, end, real);
  return SQLITE_OK;
}

void fault_disk::keep_old(const std::string& path, int64_t from, int64_t to,
                          void* real) {
  auto& log = undo_[path];
  to = std::min(to, log.synced_size);
  if (from >= to)
    return;
  std::string old(static_cast<size_t>(to - from), '\0');
  auto* file = static_cast<sqlite3_file*>(real);
  file->pMethods->xRead(file, old.data(), static_cast<int>(old.size()), from);
  log.old.emplace_back(from, std::move(old));
}

int fault_disk::on_truncate(const std::string& path, int64_t size,
                            int64_t size_before, void* real) {
  std::lock_guard<std::mutex> guard{mtx_};
  if (dead_ || fail_writes_)
    return SQLITE_IOERR_TRUNCATE;
  keep_old(path, size, size_before, real);
  sizes_[path] = size;
  return SQLITE_OK;
}

int fault_disk::on_sync(const std::string& path) {
  std::lock_guard<std::mutex> guard{mtx_};
  if (dead_ || fail_syncs_)
    return SQLITE_IOERR_FSYNC;
  ++syncs_;
  auto& log = undo_[path];
  log.old.clear();
  log.synced_size = sizes_[path];
  return SQLITE_OK;
}

void fault_disk::undo_unsynced() {
  // Called with mtx_ held. Every file goes back to its last synced bytes:
  // the old bytes of overwritten regions, newest capture first so that the
  // oldest (the synced) copy of each byte is written last, then the synced
  // length.
  for (auto& [path, log] : undo_) {
    if (path.empty() || log.fd < 0)
      continue;
    for (auto i = log.old.rbegin(); i != log.old.rend(); ++i)
      if (::pwrite(log.fd, i->second.data(), i->second.size(), i->first) < 0)
        break;
    if (::ftruncate(log.fd, log.synced_size) == 0)
      sizes_[path] = log.synced_size;
    log.old.clear();
  }
  dead_ = true;
}

int64_t rows_unlocked(const std::string& path, const std::string& table) {
  // A copy of the file and its WAL, as a power cut would leave them: the
  // copy's first reader recovers the WAL; the store's locks never matter.
  char dir[] = "/tmp/fleetd-rows-XXXXXX";
  if (!::mkdtemp(dir))
    return -1;
  auto copy = std::string(dir) + "/copy.db";
  for (auto suffix : {"", "-wal"}) {
    std::ifstream in(path + suffix, std::ios::binary);
    if (!in)
      continue;
    std::ofstream out(copy + suffix, std::ios::binary);
    out << in.rdbuf();
  }
  sqlite3* db = nullptr;
  int64_t n = -1;
  if (sqlite3_open_v2(copy.c_str(), &db, SQLITE_OPEN_READWRITE, nullptr)
      == SQLITE_OK) {
    sqlite3_stmt* st = nullptr;
    auto sql = "SELECT count(*) FROM " + table;
    if (sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr) == SQLITE_OK
        && sqlite3_step(st) == SQLITE_ROW)
      n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
  }
  sqlite3_close(db);
  for (auto suffix : {"", "-wal", "-shm"})
    std::remove((copy + suffix).c_str());
  ::rmdir(dir);
  return n;
}

} // namespace fleetd::test
