// Boost.JSON, compiled once here (header-only mode): Debian ships its headers with Boost, not
// always its library.
#include <boost/json/src.hpp>
