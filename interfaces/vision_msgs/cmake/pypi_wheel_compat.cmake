# Compatibility shim for ROS 2 PyPI wheels (ros-*-msgs from pip).
#
# The wheels are built in a manylinux container whose Python lives at
# /opt/python/cp311-cp311, and their exported CMake targets
# (<pkg>::<pkg>__rosidl_generator_py) carry that path in INTERFACE_INCLUDE_DIRECTORIES
# (Python.h and the NumPy headers). On any other machine the path does not exist and
# CMake refuses to generate. Here every such imported target has the missing prefix
# replaced by this interpreter's include dir and NumPy's include dir, so no root-owned
# path (/opt/...) needs to be created. A no-op wherever the paths exist (e.g. a real
# /opt/ros install, where this package is not built at all).
if(NOT DEFINED PANOPTIC_WHEEL_PYTHON_PREFIX)
  set(PANOPTIC_WHEEL_PYTHON_PREFIX "/opt/python/cp311-cp311")
endif()
if(NOT EXISTS "${PANOPTIC_WHEEL_PYTHON_PREFIX}")
  find_package(Python3 REQUIRED COMPONENTS Interpreter Development NumPy)
  get_directory_property(_pwc_targets IMPORTED_TARGETS)
  set(_pwc_fixed 0)
  foreach(_pwc_t IN LISTS _pwc_targets)
    get_target_property(_pwc_inc "${_pwc_t}" INTERFACE_INCLUDE_DIRECTORIES)
    if(NOT _pwc_inc OR NOT _pwc_inc MATCHES "${PANOPTIC_WHEEL_PYTHON_PREFIX}")
      continue()
    endif()
    set(_pwc_new "")
    foreach(_pwc_dir IN LISTS _pwc_inc)
      if(_pwc_dir MATCHES "numpy")
        list(APPEND _pwc_new ${Python3_NumPy_INCLUDE_DIRS})
      elseif(_pwc_dir MATCHES "^${PANOPTIC_WHEEL_PYTHON_PREFIX}")
        list(APPEND _pwc_new ${Python3_INCLUDE_DIRS})
      else()
        list(APPEND _pwc_new "${_pwc_dir}")
      endif()
    endforeach()
    list(REMOVE_DUPLICATES _pwc_new)
    set_target_properties("${_pwc_t}" PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${_pwc_new}")
    math(EXPR _pwc_fixed "${_pwc_fixed} + 1")
  endforeach()
  message(STATUS "pypi_wheel_compat: re-pointed ${_pwc_fixed} imported targets from ${PANOPTIC_WHEEL_PYTHON_PREFIX} to ${Python3_INCLUDE_DIRS}")
endif()
