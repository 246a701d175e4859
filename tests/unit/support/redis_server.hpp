// A redis-server of the test's own (never a system service): started in a temp dir with no
// persistence, on a unix socket and, for TCP tests, on a free port of 127.0.0.1; stopped by its
// pid. It can be paused (SIGSTOP), resumed, and killed and started again on the same socket and
// port, for the timeout and reconnect tests. Blocking: call it from the test's thread (or a
// coroutine that may block its thread for a moment).
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "coro_test.hpp"

namespace gatherd::core::test {

class redis_server {
 public:
  struct options {
    bool tcp = false;         // also listen on a free TCP port; url() is then redis://
    std::string requirepass;  // the default user's password; none if empty
  };

  redis_server() : redis_server(options{}) {}
  explicit redis_server(options o) : options_(std::move(o)) {
    char pattern[] = "/tmp/gatherd-redis-XXXXXX";
    if (!::mkdtemp(pattern)) throw std::runtime_error("mkdtemp failed");
    dir_ = pattern;
    socket_path_ = dir_ + "/redis.sock";
    if (options_.tcp) port_ = free_port();
    start();
  }

  ~redis_server() {
    stop();
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }

  redis_server(const redis_server&) = delete;
  redis_server& operator=(const redis_server&) = delete;

  // With the password of options.requirepass, if any, as the default user.
  std::string url() const {
    const std::string credentials =
        options_.requirepass.empty() ? "" : ":" + options_.requirepass + "@";
    if (options_.tcp) return "redis://" + credentials + "127.0.0.1:" + std::to_string(port_);
    return "unix://" + credentials + socket_path_;
  }
  const std::string& socket_path() const { return socket_path_; }
  std::uint16_t port() const { return port_; }
  pid_t pid() const { return pid_; }

  // Starts it (again, on the same socket and port) and waits until it answers.
  void start() {
    if (pid_ > 0) throw std::logic_error("redis-server already running");
    const std::string program = find_program("redis-server");
    std::vector<std::string> args = {program,
                                     "--port",
                                     std::to_string(port_),
                                     "--bind",
                                     "127.0.0.1",
                                     "--unixsocket",
                                     socket_path_,
                                     "--unixsocketperm",
                                     "700",
                                     "--save",
                                     "",
                                     "--appendonly",
                                     "no",
                                     "--dir",
                                     dir_,
                                     "--logfile",
                                     dir_ + "/redis.log",
                                     "--daemonize",
                                     "no"};
    if (!options_.requirepass.empty()) {
      args.push_back("--requirepass");
      args.push_back(options_.requirepass);
    }
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    // Only async-signal-safe calls in the child: the test may have threads running.
    const pid_t parent = ::getpid();
    const pid_t child = ::fork();
    if (child < 0) throw std::runtime_error("fork failed");
    if (child == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive a crashed test
      if (::getppid() != parent) ::_exit(126);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    pid_ = child;
    wait_until_answering();
  }

  // SIGKILL, and reaped: its clients see their connections reset at once.
  void kill() { stop(); }

  void pause() { send_signal(SIGSTOP); }
  void resume() { send_signal(SIGCONT); }

 private:
  void stop() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
  }

  void send_signal(int sig) {
    if (pid_ <= 0 || ::kill(pid_, sig) != 0) throw std::runtime_error("redis-server not running");
  }

  static std::string find_program(const std::string& name) {
    const char* path = std::getenv("PATH");
    std::stringstream dirs(path ? path : "/usr/bin:/bin");
    for (std::string d; std::getline(dirs, d, ':');) {
      const std::string candidate = d + "/" + name;
      if (::access(candidate.c_str(), X_OK) == 0) return candidate;
    }
    for (const char* d : {"/usr/bin/", "/usr/sbin/"}) {
      if (::access((d + name).c_str(), X_OK) == 0) return d + name;
    }
    throw std::runtime_error(name + " not found (apt-get install redis-server)");
  }

  // A port the kernel had free a moment ago (a tiny race with other processes; fine for tests).
  static std::uint16_t free_port() {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    socklen_t len = sizeof a;
    if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
      if (fd >= 0) ::close(fd);
      throw std::runtime_error("no free port");
    }
    ::close(fd);
    return ntohs(a.sin_port);
  }

  // Any reply to PING (+PONG, or -NOAUTH with a password) means it is serving.
  bool answers() const {
    const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd < 0) return false;
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strncpy(a.sun_path, socket_path_.c_str(), sizeof a.sun_path - 1);
    bool ok = false;
    if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) {
      const char ping[] = "PING\r\n";
      char buf[64] = {};
      timeval tv{1, 0};
      ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
      ok = ::send(fd, ping, sizeof ping - 1, MSG_NOSIGNAL) == sizeof ping - 1 &&
           ::read(fd, buf, sizeof buf) > 0 && (buf[0] == '+' || buf[0] == '-');
    }
    ::close(fd);
    return ok;
  }

  void wait_until_answering() {
    const auto deadline = steady_clock::now() + scaled(millis{10000});
    while (!answers()) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        throw std::runtime_error("redis-server exited at start: " + log());
      }
      if (steady_clock::now() > deadline) throw std::runtime_error("redis-server did not answer");
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }

  std::string log() const {
    std::ifstream in(dir_ + "/redis.log");
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }

  options options_;
  std::string dir_;
  std::string socket_path_;
  std::uint16_t port_ = 0;
  pid_t pid_ = -1;
};

}  // namespace gatherd::core::test
