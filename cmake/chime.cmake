# Dependencies and the one wrapper every Chime library is built through.
find_package(PkgConfig REQUIRED)
pkg_check_modules(PQXX REQUIRED IMPORTED_TARGET libpqxx)
pkg_check_modules(HTTPLIB REQUIRED IMPORTED_TARGET cpp-httplib)
find_package(date REQUIRED)
find_package(nlohmann_json REQUIRED)
find_package(Threads REQUIRED)
find_package(OpenSSL REQUIRED)
find_package(CURL REQUIRED)

# CAF 0.17 and librabbitmq ship neither a CMake config nor a pkg-config file
# here: found by hand.
find_path(CAF_INCLUDE_DIR caf/all.hpp REQUIRED)
find_library(CAF_CORE_LIBRARY caf_core REQUIRED)
find_library(CAF_IO_LIBRARY caf_io REQUIRED)
add_library(caf::core INTERFACE IMPORTED)
target_include_directories(caf::core INTERFACE ${CAF_INCLUDE_DIR})
target_link_libraries(caf::core INTERFACE ${CAF_CORE_LIBRARY} Threads::Threads)
# http_parser (Node.js's, libhttp-parser-dev) parses the email service's
# answers; Debian ships it as a static library with no package file.
find_path(HTTP_PARSER_INCLUDE_DIR http_parser.h REQUIRED)
find_library(HTTP_PARSER_LIBRARY http_parser REQUIRED)
add_library(http_parser::http_parser INTERFACE IMPORTED)
target_include_directories(http_parser::http_parser INTERFACE ${HTTP_PARSER_INCLUDE_DIR})
target_link_libraries(http_parser::http_parser INTERFACE ${HTTP_PARSER_LIBRARY})
find_path(RABBITMQ_INCLUDE_DIR amqp.h REQUIRED)
find_library(RABBITMQ_LIBRARY rabbitmq REQUIRED)
add_library(rabbitmq::rabbitmq INTERFACE IMPORTED)
target_include_directories(rabbitmq::rabbitmq INTERFACE ${RABBITMQ_INCLUDE_DIR})
target_link_libraries(rabbitmq::rabbitmq INTERFACE ${RABBITMQ_LIBRARY})
add_library(caf::io INTERFACE IMPORTED)
target_link_libraries(caf::io INTERFACE caf::core ${CAF_IO_LIBRARY})

function(chime_set_warnings target)
  target_compile_options(${target} PRIVATE -Wall -Wextra)
endfunction()

# chime_add_library(NAME SRCS a.cpp ... DEPS chime::runtime ...)
# Makes the static library chime_NAME with the alias chime::NAME.
function(chime_add_library name)
  cmake_parse_arguments(arg "" "" "SRCS;DEPS;PRIVATE_DEPS" ${ARGN})
  add_library(chime_${name} STATIC ${arg_SRCS})
  add_library(chime::${name} ALIAS chime_${name})
  target_include_directories(chime_${name} PUBLIC ${PROJECT_SOURCE_DIR})
  target_link_libraries(chime_${name} PUBLIC ${arg_DEPS} PRIVATE ${arg_PRIVATE_DEPS})
  chime_set_warnings(chime_${name})
endfunction()
