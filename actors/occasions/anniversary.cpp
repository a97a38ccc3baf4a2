#include "actors/occasions/kinds.hpp"

#include "actors/user_record.hpp"

namespace chime {

namespace {

class anniversary final : public occasion {
public:
  std::string_view name() const override {
    return "anniversary";
  }
  std::string message(const user_record& user) const override {
    return "Hey, " + user.first_name + " " + user.last_name
           + " happy anniversary";
  }
};

} // namespace

occasion_ptr make_anniversary() {
  return std::make_shared<anniversary>();
}

} // namespace chime
