// I/O seams for the storage tests (sluice::file_io): failures on demand, and
// a machine that loses power.
//
//  - fault_io: the real calls, with failures the test arms: a write that stops
//    after N bytes and fails (ENOSPC by default), a write that returns 0, a
//    failing fdatasync (EIO), ftruncate or open of a new file. It also logs
//    folder fsyncs and mkdirs, to check that a made folder is synced.
//  - power_io: the real calls, remembering what each file held at its last
//    successful fdatasync/fsync and which names each folder held at its last
//    fsync. power_off() makes every later call fail; crash() then rewrites the
//    folder to what a disk would hold after losing power: synced contents
//    (plus, if asked, part of what was written after, as a disk may have
//    written some pages), names as of the folder's last sync.
#pragma once

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <sluice/storage/io.hpp>
#include <string>
#include <vector>

#include "storage_support.hpp"

namespace test {

// The names in a folder.
inline std::set<std::string> names_in(const std::string& dir) {
  std::set<std::string> out;
  if (DIR* d = ::opendir(dir.c_str())) {
    while (const dirent* e = ::readdir(d)) {
      const std::string name = e->d_name;
      if (name != "." && name != "..") out.insert(name);
    }
    ::closedir(d);
  }
  return out;
}

class fault_io final : public sluice::file_io {
 public:
  // The next write stops after `bytes` more bytes, then fails with `err`.
  std::atomic<long> fail_write_after{-1};
  std::atomic<int> write_errno{ENOSPC};
  std::atomic<int> writes_returning_zero{0};  // this many writes return 0
  std::atomic<int> fail_fdatasync{0};         // this many fdatasyncs fail (EIO)
  std::atomic<int> fail_ftruncate{0};
  std::atomic<bool> fail_create{false};  // open(O_CREAT) fails (ENOSPC)
  std::atomic<int> fdatasyncs{0};

  int open(const char* path, int flags, mode_t mode) override {
    if ((flags & O_CREAT) != 0 && fail_create.load()) {
      errno = ENOSPC;
      return -1;
    }
    const int fd = ::open(path, flags, mode);
    if (fd >= 0) {
      std::lock_guard<std::mutex> lock(m_);
      paths_[fd] = path;
    }
    return fd;
  }
  int close(int fd) override {
    {
      std::lock_guard<std::mutex> lock(m_);
      paths_.erase(fd);
    }
    return ::close(fd);
  }
  ssize_t write(int fd, const void* p, std::size_t n) override {
    if (writes_returning_zero.load() > 0) {
      --writes_returning_zero;
      return 0;
    }
    // The countdown is changed only if nobody set it meanwhile: a test that
    // arms a failure while a write is under way keeps its setting.
    for (;;) {
      long left = fail_write_after.load();
      if (left < 0) return ::write(fd, p, n);
      if (left == 0) {
        if (!fail_write_after.compare_exchange_strong(left, -1)) continue;
        errno = write_errno.load();
        return -1;
      }
      const std::size_t k = std::min<std::size_t>(n, static_cast<std::size_t>(left));
      const ssize_t w = ::write(fd, p, k);
      if (w > 0) (void)fail_write_after.compare_exchange_strong(left, left - w);
      return w;
    }
  }
  ssize_t pread(int fd, void* p, std::size_t n, off_t at) override { return ::pread(fd, p, n, at); }
  int fdatasync(int fd) override {
    ++fdatasyncs;
    if (fail_fdatasync.load() > 0) {
      --fail_fdatasync;
      errno = EIO;
      return -1;
    }
    return ::fdatasync(fd);
  }
  int fsync(int fd) override {
    {
      std::lock_guard<std::mutex> lock(m_);
      auto it = paths_.find(fd);
      if (it != paths_.end()) dir_syncs_.push_back(it->second);
    }
    return ::fsync(fd);
  }
  int ftruncate(int fd, off_t size) override {
    if (fail_ftruncate.load() > 0) {
      --fail_ftruncate;
      errno = EIO;
      return -1;
    }
    return ::ftruncate(fd, size);
  }
  off_t lseek(int fd, off_t at, int whence) override { return ::lseek(fd, at, whence); }
  int fstat(int fd, struct stat* st) override { return ::fstat(fd, st); }
  int unlink(const char* path) override { return ::unlink(path); }
  int rename(const char* from, const char* to) override { return ::rename(from, to); }
  int mkdir(const char* path, mode_t mode) override {
    {
      std::lock_guard<std::mutex> lock(m_);
      mkdirs_.emplace_back(path);
    }
    return ::mkdir(path, mode);
  }
  int flock(int fd, int op) override { return ::flock(fd, op); }

  // Paths fsync was called on (files and folders), in order.
  std::vector<std::string> fsynced() {
    std::lock_guard<std::mutex> lock(m_);
    return dir_syncs_;
  }
  std::vector<std::string> made_dirs() {
    std::lock_guard<std::mutex> lock(m_);
    return mkdirs_;
  }

 private:
  std::mutex m_;
  std::map<int, std::string> paths_;
  std::vector<std::string> dir_syncs_;
  std::vector<std::string> mkdirs_;
};

class power_io final : public sluice::file_io {
 public:
  // What is in the folder now is durable (it is what the last crash left).
  explicit power_io(std::string dir) : dir_(std::move(dir)), durable_names_(names_in(dir_)) {
    for (const std::string& name : durable_names_)
      synced_[dir_ + "/" + name] = read_file(dir_ + "/" + name);
  }

  // From now on every call fails (EIO), as on a machine without power.
  void power_off() { off_ = true; }

  // What survives: each durable name with its synced bytes, and `keep` of
  // the bytes written after them (0: none; 1: a random part; 2: a random part
  // then zeros, as an extended file whose pages were never written).
  void crash(std::mt19937_64& rng, int keep) {
    std::lock_guard<std::mutex> lock(m_);
    const std::set<std::string> now = names_in(dir_);
    for (const std::string& name : now)
      if (durable_names_.count(name) == 0) ::unlink((dir_ + "/" + name).c_str());
    for (const std::string& name : durable_names_) {
      const std::string path = dir_ + "/" + name;
      const auto it = synced_.find(path);
      std::vector<unsigned char> bytes =
          it != synced_.end() ? it->second : std::vector<unsigned char>{};
      if (keep != 0 && now.count(name) != 0) {
        const std::vector<unsigned char> current = read_file(path);
        if (current.size() > bytes.size() &&
            std::equal(bytes.begin(), bytes.end(), current.begin())) {
          const std::size_t extra = current.size() - bytes.size();
          const std::size_t part = static_cast<std::size_t>(rng() % (extra + 1));
          bytes.insert(bytes.end(), current.begin() + static_cast<std::ptrdiff_t>(bytes.size()),
                       current.begin() + static_cast<std::ptrdiff_t>(bytes.size() + part));
          if (keep == 2) bytes.resize(bytes.size() + (extra - part), 0);
        }
      }
      write_file(path, bytes);
    }
    off_ = false;
    paths_.clear();
  }

  int open(const char* path, int flags, mode_t mode) override {
    if (off_) return fail();
    const int fd = ::open(path, flags, mode);
    if (fd >= 0) {
      std::lock_guard<std::mutex> lock(m_);
      paths_[fd] = path;
    }
    return fd;
  }
  int close(int fd) override {
    {
      std::lock_guard<std::mutex> lock(m_);
      paths_.erase(fd);
    }
    return ::close(fd);
  }
  ssize_t write(int fd, const void* p, std::size_t n) override {
    if (off_) return fail();
    return ::write(fd, p, n);
  }
  ssize_t pread(int fd, void* p, std::size_t n, off_t at) override {
    if (off_) return fail();
    return ::pread(fd, p, n, at);
  }
  int fdatasync(int fd) override { return sync(fd); }
  int fsync(int fd) override { return sync(fd); }
  int ftruncate(int fd, off_t size) override {
    if (off_) return fail();
    return ::ftruncate(fd, size);
  }
  off_t lseek(int fd, off_t at, int whence) override {
    if (off_) return fail();
    return ::lseek(fd, at, whence);
  }
  int fstat(int fd, struct stat* st) override {
    if (off_) return fail();
    return ::fstat(fd, st);
  }
  int unlink(const char* path) override {
    if (off_) return fail();
    return ::unlink(path);
  }
  int rename(const char* from, const char* to) override {
    if (off_) return fail();
    return ::rename(from, to);
  }
  int mkdir(const char* path, mode_t mode) override {
    if (off_) return fail();
    return ::mkdir(path, mode);
  }
  int flock(int fd, int op) override { return ::flock(fd, op); }

 private:
  static int fail() {
    errno = EIO;
    return -1;
  }
  int sync(int fd) {
    if (off_) return fail();
    if (::fsync(fd) != 0) return -1;
    std::lock_guard<std::mutex> lock(m_);
    const auto it = paths_.find(fd);
    if (it == paths_.end()) return 0;
    struct stat st {};
    if (::fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
      if (it->second == dir_) durable_names_ = names_in(dir_);
      return 0;
    }
    synced_[it->second] = read_file(it->second);
    return 0;
  }

  std::string dir_;
  std::atomic<bool> off_{false};
  std::mutex m_;
  std::map<int, std::string> paths_;
  std::map<std::string, std::vector<unsigned char>> synced_;
  std::set<std::string> durable_names_;
};

}  // namespace test
