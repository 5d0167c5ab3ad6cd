// The store engines the collector's tests run on: the embedded SQLite default and PostgreSQL
// (a real server, tests/support/postgres_server.hpp). For INSTANTIATE_TEST_SUITE_P.
#pragma once

#include <string>

#include <gtest/gtest.h>

namespace edgefleet::collector_testing {

enum class Engine { kSqlite, kPostgres };

inline std::string EngineName(const ::testing::TestParamInfo<Engine>& param) {
  return param.param == Engine::kSqlite ? "Sqlite" : "Postgres";
}

}  // namespace edgefleet::collector_testing
