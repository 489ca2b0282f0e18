// The strict JSON reader the query sources read servers' answers with.
#include "messages/json_reader.hpp"

#include <doctest/doctest.h>

using namespace fleetd;

TEST_CASE("json reader: a document's members, items and literals") {
  std::string why;
  auto doc = parse_json(R"({"a":[1.5,"x\u00e9",true,null],"b":{"c":"d"}})",
                        why);
  REQUIRE_MESSAGE(doc, why);
  auto* a = json_member(*doc, "a");
  REQUIRE(a);
  REQUIRE(a->items.size() == 4);
  CHECK(a->items[0].text == "1.5");
  CHECK(a->items[1].text == "x\xc3\xa9");
  CHECK(json_member(*json_member(*doc, "b"), "c")->text == "d");
  CHECK(json_member(*doc, "zz") == nullptr);
  // No member of a non-object.
  CHECK(json_member(a->items[0], "a") == nullptr);
}

TEST_CASE("json reader: malformed, trailing or too deep input is refused") {
  std::string why;
  for (auto bad : {"", "{", "[1,]", "{\"a\":1} x", "\"\xff\"", "01", "{a:1}"}) {
    CAPTURE(bad);
    CHECK_FALSE(parse_json(bad, why));
  }
  CHECK_FALSE(parse_json(std::string(100, '[') + std::string(100, ']'), why));
  CHECK(parse_json(std::string(10, '[') + std::string(10, ']'), why));
}
