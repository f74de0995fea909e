// RawDb: statements on a second, raw SQLite connection, for what the Store
// API does not show (row counts, PRAGMAs, stored bytes) and to inject faults.
// Failures are reported as GoogleTest failures of the calling test.
#ifndef HAWIYA_TESTS_TESTING_RAW_DB_H_
#define HAWIYA_TESTS_TESTING_RAW_DB_H_

#include <sqlite3.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace hawiya::testing {

class RawDb {
 public:
  explicit RawDb(const std::filesystem::path& path) {
    EXPECT_EQ(sqlite3_open(path.c_str(), &db_), SQLITE_OK);
    sqlite3_busy_timeout(db_, 5000);
  }
  ~RawDb() { sqlite3_close(db_); }
  RawDb(const RawDb&) = delete;
  RawDb& operator=(const RawDb&) = delete;

  void Exec(const std::string& sql) {
    char* error = nullptr;
    EXPECT_EQ(sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &error),
              SQLITE_OK)
        << (error ? error : "");
    sqlite3_free(error);
  }

  // Binds one blob to ?1.
  void ExecBlob(const std::string& sql, const std::string& blob) {
    sqlite3_stmt* stmt = Prepare(sql);
    sqlite3_bind_blob(stmt, 1, blob.data(), static_cast<int>(blob.size()),
                      SQLITE_TRANSIENT);
    EXPECT_EQ(sqlite3_step(stmt), SQLITE_DONE) << sqlite3_errmsg(db_);
    sqlite3_finalize(stmt);
  }

  // The first column of the first row; -1 if there is none.
  int64_t Int(const std::string& sql) {
    sqlite3_stmt* stmt = Prepare(sql);
    int64_t value = -1;
    if (sqlite3_step(stmt) == SQLITE_ROW) value = sqlite3_column_int64(stmt, 0);
    sqlite3_finalize(stmt);
    return value;
  }

  // The first column of the first row, as bytes; empty if there is none.
  std::string Blob(const std::string& sql) {
    std::vector<std::string> values = Blobs(sql);
    return values.empty() ? std::string() : values.front();
  }

  // The first column of every row, as bytes.
  std::vector<std::string> Blobs(const std::string& sql) {
    sqlite3_stmt* stmt = Prepare(sql);
    std::vector<std::string> values;
    while (sqlite3_step(stmt) == SQLITE_ROW) {
      const void* blob = sqlite3_column_blob(stmt, 0);
      values.emplace_back(static_cast<const char*>(blob),
                          sqlite3_column_bytes(stmt, 0));
    }
    sqlite3_finalize(stmt);
    return values;
  }

  // The first column of the first row, as text; empty if there is none.
  std::string Text(const std::string& sql) {
    sqlite3_stmt* stmt = Prepare(sql);
    std::string value;
    if (sqlite3_step(stmt) == SQLITE_ROW) {
      const unsigned char* text = sqlite3_column_text(stmt, 0);
      if (text != nullptr) value = reinterpret_cast<const char*>(text);
    }
    sqlite3_finalize(stmt);
    return value;
  }

 private:
  sqlite3_stmt* Prepare(const std::string& sql) {
    sqlite3_stmt* stmt = nullptr;
    EXPECT_EQ(sqlite3_prepare_v2(db_, sql.c_str(), -1, &stmt, nullptr),
              SQLITE_OK)
        << sqlite3_errmsg(db_) << " in: " << sql;
    return stmt;
  }

  sqlite3* db_ = nullptr;
};

}  // namespace hawiya::testing

#endif  // HAWIYA_TESTS_TESTING_RAW_DB_H_
