#pragma once
// The keyspaces unit tests share, built from made-up catalog rows:
//   users: hash,   user:{id}, bigint id; name text, email text, age integer NOT NULL
//   notes: string, note:{id}, bigint id; body text
#include <utility>
#include <vector>

#include "larder/cache/keyspace.hpp"
#include "larder/config/config.hpp"
#include "larder/pg/catalog.hpp"

namespace larder::cache::testing {

inline std::vector<Keyspace> testKeyspaces() {
  pg::TableInfo users;
  users.schema = "public";
  users.name = "users";
  users.columns = {{"id", "bigint", true, 1, false, ""},
                   {"name", "text", false, 0, false, ""},
                   {"email", "text", false, 0, false, ""},
                   {"age", "integer", true, 0, false, ""}};
  config::KeyspaceConfig u;
  u.name = "users";
  u.key = "user:{id}";
  u.table = "public.users";
  u.shape = config::KeyShape::Hash;

  pg::TableInfo notes;
  notes.schema = "public";
  notes.name = "notes";
  notes.columns = {{"id", "bigint", true, 1, false, ""}, {"body", "text", false, 0, false, ""}};
  config::KeyspaceConfig n;
  n.name = "notes";
  n.key = "note:{id}";
  n.table = "public.notes";
  n.shape = config::KeyShape::String;

  std::vector<Keyspace> all;
  all.push_back(buildKeyspace(0, u, users));
  all.push_back(buildKeyspace(1, n, notes));
  return all;
}

}  // namespace larder::cache::testing
