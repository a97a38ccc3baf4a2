#include "actors/occasions/kinds.hpp"

#include "actors/user_record.hpp"

namespace chime {

namespace {

class birthday final : public occasion {
public:
  std::string_view name() const override {
    return "birthday";
  }
  bool required() const override {
    return true;
  }
  std::string message(const user_record& user) const override {
    return "Hey, " + user.first_name + " " + user.last_name
           + " it's your birthday";
  }
};

} // namespace

occasion_ptr make_birthday() {
  return std::make_shared<birthday>();
}

} // namespace chime
