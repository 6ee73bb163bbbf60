# tractor_add_schema(target file.capnp ...): compiles a project's own Cap'n Proto schemas into
# `target`, which links tractor::tractor. Paths are relative to the calling CMakeLists.txt; the
# generated headers are included as "file.capnp.h" with the schema's directory as written
# ("proto/chat.capnp" gives "proto/chat.capnp.h"). A schema can import the runtime's own schemas
# as "/tractor/schema/payload.capnp" and "/tractor/schema/actor.capnp". Nobody needs to run
# `capnp compile` by hand.
#
# Works in this project's own tree, in a project that added it with add_subdirectory() or
# FetchContent, and from the installed package (find_package(Tractor)): the capnp tools found
# when the runtime was configured are remembered, so the caller needs no find_package(CapnProto)
# of its own.

function(tractor_add_schema target)
  if(NOT TARGET ${target})
    message(FATAL_ERROR "tractor_add_schema(${target} ...): no target named ${target}; "
                        "add_executable() or add_library() it first")
  endif()
  if(NOT ARGN)
    message(FATAL_ERROR "tractor_add_schema(${target}): no .capnp file given")
  endif()
  get_property(import_dir GLOBAL PROPERTY TRACTOR_SCHEMA_IMPORT_DIR)
  # capnp_generate_cpp() reads these from the caller's scope; outside the scope that found
  # Cap'n Proto they are unset, so the ones recorded by _tractor_remember_capnp() are used.
  foreach(var CAPNP_EXECUTABLE CAPNPC_CXX_EXECUTABLE CAPNP_INCLUDE_DIRECTORY)
    if(NOT ${var})
      get_property(${var} GLOBAL PROPERTY TRACTOR_${var})
    endif()
  endforeach()
  set(CAPNPC_IMPORT_DIRS "${import_dir}")
  set(CAPNPC_SRC_PREFIX "${CMAKE_CURRENT_SOURCE_DIR}")
  set(CAPNPC_OUTPUT_DIR "${CMAKE_CURRENT_BINARY_DIR}/tractor-schemas/${target}")
  file(MAKE_DIRECTORY "${CAPNPC_OUTPUT_DIR}")
  capnp_generate_cpp(srcs hdrs ${ARGN})
  target_sources(${target} PRIVATE ${srcs})
  target_include_directories(${target} PRIVATE "${CAPNPC_OUTPUT_DIR}")
endfunction()

macro(_tractor_remember_capnp import_dir)
  # Called once Cap'n Proto was found: records what tractor_add_schema() needs everywhere.
  set_property(GLOBAL PROPERTY TRACTOR_SCHEMA_IMPORT_DIR "${import_dir}")
  foreach(var CAPNP_EXECUTABLE CAPNPC_CXX_EXECUTABLE CAPNP_INCLUDE_DIRECTORY)
    set_property(GLOBAL PROPERTY TRACTOR_${var} "${${var}}")
  endforeach()
endmacro()
