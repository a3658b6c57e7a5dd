// `streamq profile --html`: one self-contained page (inline CSS and JS, no
// network) with the trace's timeline and the profile summary tables.
#pragma once

#include <string>

#include "src/report/profile.h"

namespace streamq {

// The page: a canvas timeline (one row per lane, nested or overlapping spans
// stacked, colors by category, hover for name/times/args, wheel to zoom, drag
// to pan) above the category and lane tables and format_summary's text.
std::string render_profile_html(const ParsedTrace& trace, const ProfileSummary& summary, const std::string& title);

}  // namespace streamq
