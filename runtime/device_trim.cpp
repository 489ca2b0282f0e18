// Device build only: definitions that answer the references Debian's static
// libsqlite3.a, libmbedx509.a and libprotobuf-lite.a make to parts fleetd
// never uses. Debian builds them without -ffunction-sections, so
// --gc-sections cannot drop those parts: an archive member comes in whole
// once a symbol of it is needed, and a symbol already defined here needs no
// member. If a member is ever needed for another symbol, the link fails on the
// duplicate (never silently).
// runtime/CMakeLists.txt links this into fleetd as an object, ahead of the
// archives; the normal build (shared libraries) never compiles it.
#include <google/protobuf/extension_set.h>
#include <mbedtls/certs.h>
#include <sqlite3.h>

#include <cstdlib>

extern "C" {

// SQLite's openDatabase() registers its built-in extensions on every
// connection: FTS3/4, FTS5, R*Tree, dbstat, sqlite_stmt, json_each/json_tree,
// and func.c the json_*() functions. fleetd's SQL uses none of them; these
// no-ops keep fts5.o, fts3*.o, rtree.o, json.o, dbstat.o and stmt.o out.
int sqlite3Fts3Init(sqlite3*) { return SQLITE_OK; }
int sqlite3Fts5Init(sqlite3*) { return SQLITE_OK; }
int sqlite3RtreeInit(sqlite3*) { return SQLITE_OK; }
int sqlite3DbstatRegister(sqlite3*) { return SQLITE_OK; }
int sqlite3StmtVtabInit(sqlite3*) { return SQLITE_OK; }
int sqlite3JsonTableFunctions(sqlite3*) { return SQLITE_OK; }
void sqlite3RegisterJsonFunctions(void) {}

// mbedTLS's test certificates (certs.c, 54 KB): only x509.c's self test,
// which fleetd never runs, refers to them.
const char* mbedtls_test_ca_crt = nullptr;
const size_t mbedtls_test_ca_crt_len = 0;
const char* mbedtls_test_cli_crt = nullptr;
const size_t mbedtls_test_cli_crt_len = 0;

} // extern "C"

// protobuf-lite's extension code (extension_set.cc, 133 KB): only
// generated_message_util.cc's ExtensionSerializer, the table-driven
// serializer of a message with extensions, calls into it. fleetd's messages
// declare no extensions and serialize with their generated code.
namespace google::protobuf::internal {
uint8_t* ExtensionSet::_InternalSerializeImpl(const MessageLite*, int, int,
                                              uint8_t*,
                                              io::EpsCopyOutputStream*) const {
  std::abort();
}
} // namespace google::protobuf::internal
