# Sanitizer and fuzzing builds, each in a build tree of its own (see
# scripts/sanitize.sh). They apply to every target, so the unit, pg and sim
# tests run the very code the fuzzers exercise.
#   -DCHIME_SANITIZE="address;undefined"  instruments every target
#   -DCHIME_FUZZ=ON                       builds tests/fuzz (clang only)
set(CHIME_SANITIZE "" CACHE STRING
    "sanitizers for every target, e.g. address;undefined")
option(CHIME_FUZZ "build the libFuzzer targets in tests/fuzz (needs clang)" OFF)

if(CHIME_SANITIZE)
  list(JOIN CHIME_SANITIZE "," chime_sanitizers)
  # A report is a failure: no sanitizer may log and carry on.
  add_compile_options(-fsanitize=${chime_sanitizers} -fno-omit-frame-pointer
                      -fno-sanitize-recover=all)
  add_link_options(-fsanitize=${chime_sanitizers})
  # Reports in third-party headers that Chime cannot fix, each justified
  # there. Needs clang; gcc has no ignore lists.
  if(CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
    set(chime_ignorelist ${PROJECT_SOURCE_DIR}/tests/sanitizers/ubsan_ignorelist.txt)
    add_compile_options(-fsanitize-ignorelist=${chime_ignorelist})
    # ccache leaves the list's path out of its key (it names the clone);
    # this puts the list's content in, so that an edit rebuilds.
    file(SHA256 ${chime_ignorelist} chime_ignorelist_sha)
    add_compile_definitions(CHIME_SANITIZER_IGNORELIST=${chime_ignorelist_sha})
    set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${chime_ignorelist})
  endif()
endif()

if(CHIME_FUZZ)
  if(NOT CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
    message(FATAL_ERROR "CHIME_FUZZ needs clang (libFuzzer): configure with "
                        "-DCMAKE_CXX_COMPILER=clang++-14")
  endif()
  # Coverage feedback from the libraries under test; only the fuzz targets
  # link libFuzzer's main.
  add_compile_options(-fsanitize=fuzzer-no-link)
endif()
