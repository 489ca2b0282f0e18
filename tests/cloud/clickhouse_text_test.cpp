#include "cloud/clickhouse_text.hpp"

#include <cmath>

#include <doctest/doctest.h>

using namespace fleetd;

TEST_CASE("clickhouse text: escaping leaves no quote, backslash or control "
          "byte bare, and unescaping gives the bytes back") {
  std::string hostile{"a'b\\c\td\ne\rf\0g\x7F\x01h\xFF\xFEi\\x41'--", 26};
  auto escaped = ch_escape(hostile);
  for (size_t i = 0; i < escaped.size(); ++i) {
    auto b = static_cast<unsigned char>(escaped[i]);
    CHECK(b >= 0x20);
    CHECK(b != 0x7F);
    // Every backslash starts a pair; a quote outside a pair is bare.
    if (escaped[i] == '\\') {
      REQUIRE(i + 1 < escaped.size());
      ++i;
    } else {
      CHECK(escaped[i] != '\'');
    }
  }
  CHECK(ch_unescape(escaped) == hostile);
  CHECK(ch_literal("it's") == "'it\\'s'");
}

TEST_CASE("clickhouse text: ClickHouse's own escapes read back") {
  CHECK(ch_unescape("a\\tb\\nc\\0d\\\\e\\'f\\qg\\x41") ==
        std::string{"a\tb\nc\0d\\e'fqgA", 14});
  // A trailing backslash or a short \x stays what it is.
  CHECK(ch_unescape("x\\") == "x\\");
  CHECK(ch_unescape("\\x4") == "x4");
}

TEST_CASE("clickhouse text: rows split at tabs and newlines, bounded") {
  bool truncated = false;
  auto rows = ch_rows("a\tb\\tc\n1\t2\n", 10, truncated);
  REQUIRE(rows.size() == 2);
  CHECK(rows[0] == std::vector<std::string>{"a", "b\tc"});
  CHECK(rows[1] == std::vector<std::string>{"1", "2"});
  CHECK_FALSE(truncated);
  CHECK(ch_rows("1\n2\n3\n", 2, truncated).size() == 2);
  CHECK(truncated);
}

TEST_CASE("clickhouse text: label sets map to distinct canonical strings") {
  CHECK(canonical_labels({}) == "");
  CHECK(canonical_labels({{"b", "2"}, {"a", "1"}}) == "a=1,b=2");
  // Separators inside keys or values cannot fake another label set.
  CHECK(canonical_labels({{"a", "1,b=2"}})
        != canonical_labels({{"a", "1"}, {"b", "2"}}));
  CHECK(canonical_labels({{"a=1", ""}}) != canonical_labels({{"a", "1="}}));
}

TEST_CASE("clickhouse text: canonical labels read back as the same set") {
  for (label_map l : {label_map{}, label_map{{"a", "1"}, {"b", "2"}},
                      label_map{{"a", "1,b=2"}}, label_map{{"a=1", ""}},
                      label_map{{"a", "1="}}, label_map{{"k\\", "v\\,="}},
                      label_map{{"", ""}, {"x", "\n\t"}}}) {
    CAPTURE(canonical_labels(l));
    CHECK(parse_canonical_labels(canonical_labels(l)) == l);
  }
}

TEST_CASE("clickhouse text: doubles are written to read back exactly") {
  CHECK(ch_double(0.1) == "0.10000000000000001");
  CHECK(std::strtod(ch_double(1.0 / 3).c_str(), nullptr) == 1.0 / 3);
  CHECK(ch_double(std::nan("")) == "nan");
  CHECK(ch_double(-INFINITY) == "-inf");
  CHECK(ch_double(INFINITY) == "inf");
}
