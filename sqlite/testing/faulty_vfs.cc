#include "sqlite/testing/faulty_vfs.h"

#include <glog/logging.h>

#include <cstring>
#include <map>

namespace marmot::sqlite::testing {
namespace {

// An open file: the wrapped VFS's file follows this header in the memory SQLite allocates
// (szOsFile covers both).
struct FaultyFile {
  sqlite3_file base;  // pMethods = &kMethods while the wrapped file is open
  FaultyVfs* vfs;
  const char* path;  // SQLite keeps the name valid until xClose; null for temporary files
  sqlite3_file* real() { return reinterpret_cast<sqlite3_file*>(this + 1); }
};
static_assert(sizeof(FaultyFile) % 8 == 0, "the wrapped file must start aligned");

FaultyFile* Faulty(sqlite3_file* f) { return reinterpret_cast<FaultyFile*>(f); }
sqlite3_file* Real(sqlite3_file* f) { return Faulty(f)->real(); }
const sqlite3_io_methods* RealMethods(sqlite3_file* f) { return Real(f)->pMethods; }

// SQLITE_OK, or the fault's code (counted) when a fault covers the file.
int Refusal(sqlite3_file* f) {
  FaultyFile* file = Faulty(f);
  const int code = file->vfs->FaultFor(file->path);
  if (code != SQLITE_OK) file->vfs->CountRefused();
  return code;
}

int Close(sqlite3_file* f) { return RealMethods(f)->xClose(Real(f)); }
int Read(sqlite3_file* f, void* buf, int n, sqlite3_int64 offset) {
  return RealMethods(f)->xRead(Real(f), buf, n, offset);
}
int Write(sqlite3_file* f, const void* buf, int n, sqlite3_int64 offset) {
  if (int code = Refusal(f); code != SQLITE_OK) return code;
  return RealMethods(f)->xWrite(Real(f), buf, n, offset);
}
int Truncate(sqlite3_file* f, sqlite3_int64 size) {
  if (int code = Refusal(f); code != SQLITE_OK) return code;
  return RealMethods(f)->xTruncate(Real(f), size);
}
int Sync(sqlite3_file* f, int flags) {
  if (int code = Refusal(f); code != SQLITE_OK) return code;
  return RealMethods(f)->xSync(Real(f), flags);
}
int FileSize(sqlite3_file* f, sqlite3_int64* size) {
  return RealMethods(f)->xFileSize(Real(f), size);
}
int Lock(sqlite3_file* f, int level) { return RealMethods(f)->xLock(Real(f), level); }
int Unlock(sqlite3_file* f, int level) { return RealMethods(f)->xUnlock(Real(f), level); }
int CheckReservedLock(sqlite3_file* f, int* out) {
  return RealMethods(f)->xCheckReservedLock(Real(f), out);
}
int FileControl(sqlite3_file* f, int op, void* arg) {
  return RealMethods(f)->xFileControl(Real(f), op, arg);
}
int SectorSize(sqlite3_file* f) { return RealMethods(f)->xSectorSize(Real(f)); }
int DeviceCharacteristics(sqlite3_file* f) {
  return RealMethods(f)->xDeviceCharacteristics(Real(f));
}
int ShmMap(sqlite3_file* f, int region, int size, int extend, void volatile** out) {
  return RealMethods(f)->xShmMap(Real(f), region, size, extend, out);
}
int ShmLock(sqlite3_file* f, int offset, int n, int flags) {
  return RealMethods(f)->xShmLock(Real(f), offset, n, flags);
}
void ShmBarrier(sqlite3_file* f) { RealMethods(f)->xShmBarrier(Real(f)); }
int ShmUnmap(sqlite3_file* f, int delete_flag) {
  return RealMethods(f)->xShmUnmap(Real(f), delete_flag);
}
int Fetch(sqlite3_file* f, sqlite3_int64 offset, int n, void** out) {
  return RealMethods(f)->xFetch(Real(f), offset, n, out);
}
int Unfetch(sqlite3_file* f, sqlite3_int64 offset, void* p) {
  return RealMethods(f)->xUnfetch(Real(f), offset, p);
}

// Version 3, as the unix VFS's files (checked at open).
const sqlite3_io_methods kMethods = {
    3,
    Close,
    Read,
    Write,
    Truncate,
    Sync,
    FileSize,
    Lock,
    Unlock,
    CheckReservedLock,
    FileControl,
    SectorSize,
    DeviceCharacteristics,
    ShmMap,
    ShmLock,
    ShmBarrier,
    ShmUnmap,
    Fetch,
    Unfetch,
};

FaultyVfs* Of(sqlite3_vfs* vfs) { return static_cast<FaultyVfs*>(vfs->pAppData); }
sqlite3_vfs* Base(sqlite3_vfs* vfs) { return Of(vfs)->base(); }

int Open(sqlite3_vfs* vfs, const char* name, sqlite3_file* f, int flags, int* out_flags) {
  FaultyFile* file = Faulty(f);
  file->vfs = Of(vfs);
  file->path = name;
  file->base.pMethods = nullptr;
  sqlite3_file* real = file->real();
  real->pMethods = nullptr;
  const int rc = Base(vfs)->xOpen(Base(vfs), name, real, flags, out_flags);
  if (real->pMethods != nullptr) {
    CHECK_GE(real->pMethods->iVersion, 3) << "FaultyVfs wraps files of io_methods version 3";
    file->base.pMethods = &kMethods;
  }
  return rc;
}
int Delete(sqlite3_vfs* vfs, const char* name, int sync_dir) {
  return Base(vfs)->xDelete(Base(vfs), name, sync_dir);
}
int Access(sqlite3_vfs* vfs, const char* name, int flags, int* out) {
  return Base(vfs)->xAccess(Base(vfs), name, flags, out);
}
int FullPathname(sqlite3_vfs* vfs, const char* name, int n, char* out) {
  return Base(vfs)->xFullPathname(Base(vfs), name, n, out);
}
void* DlOpen(sqlite3_vfs* vfs, const char* name) { return Base(vfs)->xDlOpen(Base(vfs), name); }
void DlError(sqlite3_vfs* vfs, int n, char* out) { Base(vfs)->xDlError(Base(vfs), n, out); }
void (*DlSym(sqlite3_vfs* vfs, void* handle, const char* symbol))(void) {
  return Base(vfs)->xDlSym(Base(vfs), handle, symbol);
}
void DlClose(sqlite3_vfs* vfs, void* handle) { Base(vfs)->xDlClose(Base(vfs), handle); }
int Randomness(sqlite3_vfs* vfs, int n, char* out) {
  return Base(vfs)->xRandomness(Base(vfs), n, out);
}
int Sleep(sqlite3_vfs* vfs, int micros) { return Base(vfs)->xSleep(Base(vfs), micros); }
int CurrentTime(sqlite3_vfs* vfs, double* out) { return Base(vfs)->xCurrentTime(Base(vfs), out); }
int GetLastError(sqlite3_vfs* vfs, int n, char* out) {
  return Base(vfs)->xGetLastError(Base(vfs), n, out);
}
int CurrentTimeInt64(sqlite3_vfs* vfs, sqlite3_int64* out) {
  return Base(vfs)->xCurrentTimeInt64(Base(vfs), out);
}

}  // namespace

FaultyVfs::FaultyVfs(std::string name, sqlite3_vfs* base) : name_(std::move(name)), base_(base) {
  std::memset(&vfs_, 0, sizeof vfs_);
  vfs_.iVersion = 2;
  vfs_.szOsFile = static_cast<int>(sizeof(FaultyFile)) + base->szOsFile;
  vfs_.mxPathname = base->mxPathname;
  vfs_.zName = name_.c_str();
  vfs_.pAppData = this;
  vfs_.xOpen = Open;
  vfs_.xDelete = Delete;
  vfs_.xAccess = Access;
  vfs_.xFullPathname = FullPathname;
  vfs_.xDlOpen = DlOpen;
  vfs_.xDlError = DlError;
  vfs_.xDlSym = DlSym;
  vfs_.xDlClose = DlClose;
  vfs_.xRandomness = Randomness;
  vfs_.xSleep = Sleep;
  vfs_.xCurrentTime = CurrentTime;
  vfs_.xGetLastError = GetLastError;
  vfs_.xCurrentTimeInt64 = CurrentTimeInt64;
}

FaultyVfs* FaultyVfs::Install(const std::string& name, bool make_default) {
  static absl::Mutex installed_mu(absl::kConstInit);
  static auto* installed = new std::map<std::string, FaultyVfs*>();
  absl::MutexLock l(&installed_mu);
  FaultyVfs*& vfs = (*installed)[name];
  if (vfs == nullptr) {
    CHECK_EQ(sqlite3_initialize(), SQLITE_OK);
    sqlite3_vfs* base = sqlite3_vfs_find(nullptr);
    CHECK(base != nullptr) << "no default SQLite VFS to wrap";
    vfs = new FaultyVfs(name, base);  // Lives as long as the process (see the header).
    CHECK_EQ(sqlite3_vfs_register(&vfs->vfs_, make_default ? 1 : 0), SQLITE_OK);
  } else if (make_default) {
    CHECK_EQ(sqlite3_vfs_register(&vfs->vfs_, 1), SQLITE_OK);
  }
  return vfs;
}

void FaultyVfs::FailWrites(const std::string& path_prefix, int code) {
  CHECK(!path_prefix.empty());
  CHECK_NE(code, SQLITE_OK);
  absl::MutexLock l(&mu_);
  prefix_ = path_prefix;
  code_ = code;
}

void FaultyVfs::Heal() {
  absl::MutexLock l(&mu_);
  prefix_.clear();
  code_ = SQLITE_OK;
}

int FaultyVfs::FaultFor(const char* path) const {
  absl::MutexLock l(&mu_);
  if (code_ == SQLITE_OK || path == nullptr) return SQLITE_OK;
  return std::strncmp(path, prefix_.c_str(), prefix_.size()) == 0 ? code_ : SQLITE_OK;
}

}  // namespace marmot::sqlite::testing
