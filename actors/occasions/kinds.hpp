#pragma once

#include "actors/occasion.hpp"

namespace chime {

// One factory per occasion kind; registered in actors/occasion.cpp.
occasion_ptr make_birthday();
occasion_ptr make_anniversary();

} // namespace chime
