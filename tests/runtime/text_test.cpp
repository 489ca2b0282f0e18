// URL escaping both ways, and the query languages' strings: hostile text
// comes back byte for byte and never leaves its string.
#include "runtime/text.hpp"

#include <doctest/doctest.h>

using namespace fleetd;

TEST_CASE("url_escape leaves only unreserved bytes and url_unescape reads "
          "it back") {
  CHECK(url_escape("aZ09-._~") == "aZ09-._~");
  CHECK(url_escape("a b&c=d/%") == "a%20b%26c%3Dd%2F%25");
  std::string all;
  for (int i = 0; i < 256; ++i)
    all += static_cast<char>(i);
  std::string back;
  REQUIRE(url_unescape(url_escape(all), back));
  CHECK(back == all);
  CHECK(url_unescape("a+b%41", back));
  CHECK(back == "a bA");
  for (auto bad : {"%", "%4", "%zz", "a%g1"})
    CHECK_FALSE(url_unescape(bad, back));
}

TEST_CASE("query_string escapes quotes, backslashes and control bytes") {
  CHECK(query_string("cpu") == "\"cpu\"");
  CHECK(query_string("a\"b\\c") == R"("a\"b\\c")");
  CHECK(query_string(std::string{"\n\t\x01\x7f", 4}) == R"("\n\x09\x01\x7f")");
  // UTF-8 passes as it is.
  CHECK(query_string("\xc3\xa9") == "\"\xc3\xa9\"");
  // Nothing of a hostile text is left outside the quotes: every quote in
  // the result but the two ends is escaped.
  auto q = query_string(R"(x"} or {org_id="b)");
  for (size_t i = 1; i + 1 < q.size(); ++i)
    if (q[i] == '"')
      CHECK(q[i - 1] == '\\');
}

TEST_CASE("split_list trims each item and keeps empty ones") {
  using v = std::vector<std::string_view>;
  CHECK(split_list("", ',') == v{});
  CHECK(split_list("a", ',') == v{"a"});
  CHECK(split_list(" a , b:1,,c ,", ',') == v{"a", "b:1", "", "c", ""});
  CHECK(split_list("  ", ',') == v{""});
}
