// The Asio vocabulary libcore uses, in one place.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace gatherd::core {

namespace net = boost::asio;

using executor = net::any_io_executor;
template <class T = void>
using awaitable = net::awaitable<T>;

}  // namespace gatherd::core
