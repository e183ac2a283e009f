// sluice — the system calls of the file log, behind one seam.
//
// file_log makes every call that changes or syncs files through a file_io
// (file_log_options::io; the POSIX one by default), so that tests, and users
// who need to, can put failures in front of them: a write that stops part-way
// with ENOSPC, an fdatasync that returns EIO, a machine that loses power and
// keeps only what was synced. Readers read with plain POSIX calls.
//
// Every function returns what its POSIX namesake returns, with errno set on
// failure. They are called from the recorder's writer thread (and from
// file_log::open); an implementation shared by several logs must be
// thread-safe.
#pragma once

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "../config.hpp"
#include "../detail/numeric.hpp"
#include "error.hpp"
#include "format.hpp"

namespace sluice {
inline namespace SLUICE_ABI {

class file_io {
 public:
  virtual ~file_io() = default;
  virtual int open(const char* path, int flags, mode_t mode) = 0;
  virtual int close(int fd) = 0;
  virtual ssize_t write(int fd, const void* p, std::size_t n) = 0;
  virtual ssize_t pread(int fd, void* p, std::size_t n, off_t at) = 0;
  virtual int fdatasync(int fd) = 0;
  virtual int fsync(int fd) = 0;  // also of a folder's descriptor
  virtual int ftruncate(int fd, off_t size) = 0;
  virtual off_t lseek(int fd, off_t at, int whence) = 0;
  virtual int fstat(int fd, struct stat* st) = 0;
  virtual int unlink(const char* path) = 0;
  virtual int rename(const char* from, const char* to) = 0;
  virtual int mkdir(const char* path, mode_t mode) = 0;
  virtual int flock(int fd, int op) = 0;
};

// The real thing.
class posix_io final : public file_io {
 public:
  int open(const char* path, int flags, mode_t mode) override { return ::open(path, flags, mode); }
  int close(int fd) override { return ::close(fd); }
  ssize_t write(int fd, const void* p, std::size_t n) override { return ::write(fd, p, n); }
  ssize_t pread(int fd, void* p, std::size_t n, off_t at) override { return ::pread(fd, p, n, at); }
  int fdatasync(int fd) override { return ::fdatasync(fd); }
  int fsync(int fd) override { return ::fsync(fd); }
  int ftruncate(int fd, off_t size) override { return ::ftruncate(fd, size); }
  off_t lseek(int fd, off_t at, int whence) override { return ::lseek(fd, at, whence); }
  int fstat(int fd, struct stat* st) override { return ::fstat(fd, st); }
  int unlink(const char* path) override { return ::unlink(path); }
  int rename(const char* from, const char* to) override { return ::rename(from, to); }
  int mkdir(const char* path, mode_t mode) override { return ::mkdir(path, mode); }
  int flock(int fd, int op) override { return ::flock(fd, op); }

  static posix_io& instance() noexcept {
    static posix_io io;
    return io;
  }
};

namespace detail {

// Makes `v` hold n bytes; false when they cannot be had (more than size_t
// holds, or the allocation fails): the caller reports an error value rather
// than let std::bad_alloc escape (or, without exceptions, end the process on
// a size no segment written by sluice has).
inline bool try_resize(std::vector<unsigned char>& v, std::uint64_t n) noexcept {
  if (n > std::uint64_t{v.max_size()}) return false;  // (a 32-bit size_t)
#if SLUICE_HAS_EXCEPTIONS
  try {
    v.resize(to_size(n));
  } catch (...) {
    return false;
  }
  return true;
#else
  // Far larger than any segment a writer makes (segment_bytes is at most
  // 1 GiB, plus one batch): refused without trying.
  if (n > (std::uint64_t{1} << 33)) return false;
  v.resize(to_size(n));
  return true;
#endif
}

inline storage_error errno_error(const char* call, const std::string& file, int err,
                                 std::uint64_t offset = 0) {
  return storage_error::make(storage_errc::io, std::string(call) + ": " + std::strerror(err), file,
                             offset);
}

// Writes all n bytes. On failure, `done` says how many did reach the file
// and `err` why the rest did not. A write that makes no progress (returns 0)
// is a failure (EIO), not a reason to try for ever.
inline bool write_all(file_io& io, int fd, const unsigned char* p, std::size_t n, int& err,
                      std::size_t& done) noexcept {
  done = 0;
  while (done < n) {
    const ssize_t w = io.write(fd, p + done, n - done);
    if (w < 0) {
      if (errno == EINTR) continue;
      err = errno;
      return false;
    }
    if (w == 0) {
      err = EIO;
      return false;
    }
    done += static_cast<std::size_t>(w);
  }
  return true;
}
inline bool write_all(file_io& io, int fd, const unsigned char* p, std::size_t n,
                      int& err) noexcept {
  std::size_t done = 0;
  return write_all(io, fd, p, n, err, done);
}
inline bool write_all(int fd, const unsigned char* p, std::size_t n, int& err) noexcept {
  return write_all(posix_io::instance(), fd, p, n, err);
}

// Reads up to n bytes at `at`; returns bytes read (short only at end of file),
// or -1 with err set.
inline ssize_t pread_some(file_io& io, int fd, unsigned char* p, std::size_t n, std::uint64_t at,
                          int& err) noexcept {
  std::size_t got = 0;
  while (got < n) {
    const ssize_t r = io.pread(fd, p + got, n - got, static_cast<off_t>(at + got));
    if (r < 0) {
      if (errno == EINTR) continue;
      err = errno;
      return -1;
    }
    if (r == 0) break;
    got += static_cast<std::size_t>(r);
  }
  return static_cast<ssize_t>(got);
}
inline ssize_t pread_some(int fd, unsigned char* p, std::size_t n, std::uint64_t at,
                          int& err) noexcept {
  return pread_some(posix_io::instance(), fd, p, n, at, err);
}

inline int open_retry(file_io& io, const char* path, int flags, mode_t mode = 0644) noexcept {
  int fd;
  do {
    fd = io.open(path, flags | O_CLOEXEC, mode);
  } while (fd < 0 && errno == EINTR);
  return fd;
}
inline int open_retry(const char* path, int flags, mode_t mode = 0644) noexcept {
  return open_retry(posix_io::instance(), path, flags, mode);
}

// Makes a folder's entries (files made, renamed or removed in it) durable.
inline storage_error sync_dir(file_io& io, const std::string& dir) {
  const int fd = open_retry(io, dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (fd < 0) return errno_error("open (folder)", dir, errno);
  storage_error e;
  if (io.fsync(fd) != 0) e = errno_error("fsync (folder)", dir, errno);
  (void)io.close(fd);
  return e;
}
inline storage_error sync_dir(const std::string& dir) {
  return sync_dir(posix_io::instance(), dir);
}

// The folder that holds `path` ("." for a bare name).
[[nodiscard]] inline std::string parent_of(const std::string& path) {
  std::string p = path;
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  const auto slash = p.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return p.substr(0, slash);
}

// Makes `dir` and its missing parents, each made folder's entry synced in
// its parent, so that the log's folder survives a crash as well as its files.
inline storage_error make_dirs(file_io& io, const std::string& dir) {
  struct stat st {};
  if (::stat(dir.c_str(), &st) == 0) {
    if (S_ISDIR(st.st_mode)) return {};
    return storage_error::make(storage_errc::io, "not a folder", dir);
  }
  const std::string parent = parent_of(dir);
  if (parent != dir) {
    if (storage_error e = make_dirs(io, parent)) return e;
  }
  if (io.mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) return errno_error("mkdir", dir, errno);
  return sync_dir(io, parent);
}

inline std::int64_t wall_ns() noexcept {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

inline storage_errc errc_of(storage::header_problem p) noexcept {
  switch (p) {
    case storage::header_problem::not_a_log:
      return storage_errc::not_a_log;
    case storage::header_problem::bad_version:
      return storage_errc::bad_version;
    case storage::header_problem::damaged:
      break;
  }
  return storage_errc::damaged;
}

struct segment_file {
  std::uint64_t base = 0;
  std::string path;
  std::uint64_t size = 0;
};

// The segments of a folder, by base offset; other files are ignored.
inline storage_error list_segments(const std::string& dir, std::vector<segment_file>& out) {
  out.clear();
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return errno_error("opendir", dir, errno);
  storage_error err;
  for (;;) {
    errno = 0;
    const dirent* ent = ::readdir(d);
    if (ent == nullptr) {
      if (errno != 0) err = errno_error("readdir", dir, errno);
      break;
    }
    std::uint64_t base = 0;
    if (!storage::parse_segment_name(ent->d_name, base)) continue;
    segment_file s;
    s.base = base;
    s.path = dir + "/" + ent->d_name;
    struct stat st {};
    if (::stat(s.path.c_str(), &st) != 0) continue;  // removed meanwhile (retention)
    if (!S_ISREG(st.st_mode)) continue;              // not a file: not a segment
    s.size = static_cast<std::uint64_t>(st.st_size);
    out.push_back(std::move(s));
  }
  ::closedir(d);
  if (err) return err;
  std::sort(out.begin(), out.end(),
            [](const segment_file& a, const segment_file& b) { return a.base < b.base; });
  return {};
}

}  // namespace detail
}  // namespace SLUICE_ABI
}  // namespace sluice
