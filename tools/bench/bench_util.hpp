#pragma once

// Small helpers every fleetd-bench subcommand uses.

#include <cstdint>
#include <string>
#include <vector>

namespace fleetd::bench {

/// Median of `xs` (mean of the middle two for an even count); 0 when empty.
double median(std::vector<double> xs);

/// Whole decimal number, nothing else; false leaves `out` unchanged.
bool parse_int(const std::string& text, int64_t& out);

/// Finite decimal number, nothing else; false leaves `out` unchanged.
bool parse_double(const std::string& text, double& out);

/// `x` with exactly `decimals` digits after the point.
std::string format(double x, int decimals);

} // namespace fleetd::bench
