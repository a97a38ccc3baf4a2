#pragma once

#include <string_view>

namespace chime {

/// The API's OpenAPI 3.1 document, served at GET /openapi.json. Its source is
/// net/openapi.json, compiled in at build time (net/CMakeLists.txt), so the
/// binary serves exactly the file that the e2e test checks against the API.
std::string_view openapi_document();

} // namespace chime
