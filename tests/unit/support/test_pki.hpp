// A throwaway certificate authority and server certificate for TLS tests, made with the OpenSSL
// C API and written as PEM files into a fresh temporary directory (removed on destruction).
#pragma once

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdlib.h>

#include <cstdio>
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>

namespace gatherd::test {

class test_pki {
 public:
  // A CA, and a leaf signed by it whose subjectAltName is `san` (e.g.
  // "DNS:localhost,IP:127.0.0.1").
  explicit test_pki(const std::string& san) {
    std::string templ = (std::filesystem::temp_directory_path() / "gatherd-pki-XXXXXX").string();
    if (!mkdtemp(templ.data())) throw std::runtime_error("mkdtemp failed");
    dir_ = templ;
    key_ptr ca_key(EVP_EC_gen("P-256"));
    key_ptr leaf_key(EVP_EC_gen("P-256"));
    if (!ca_key || !leaf_key) throw std::runtime_error("key generation failed");
    cert_ptr ca = make_cert(ca_key.get(), "gatherd test CA", nullptr, ca_key.get(), "");
    cert_ptr leaf = make_cert(leaf_key.get(), "gatherd test server", ca.get(), ca_key.get(), san);
    write_cert(ca_file(), ca.get());
    write_cert(cert_file(), leaf.get());
    write_key(key_file(), leaf_key.get());
  }
  ~test_pki() {
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }
  test_pki(const test_pki&) = delete;
  test_pki& operator=(const test_pki&) = delete;

  std::string ca_file() const { return (dir_ / "ca.pem").string(); }
  std::string cert_file() const { return (dir_ / "server.pem").string(); }
  std::string key_file() const { return (dir_ / "server.key").string(); }

 private:
  struct key_free {
    void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
  };
  struct cert_free {
    void operator()(X509* c) const { X509_free(c); }
  };
  using key_ptr = std::unique_ptr<EVP_PKEY, key_free>;
  using cert_ptr = std::unique_ptr<X509, cert_free>;

  static void add_ext(X509* cert, X509* issuer, int nid, const std::string& value) {
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
    X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str());
    if (!ext) throw std::runtime_error("bad extension " + value);
    X509_add_ext(cert, ext, -1);
    X509_EXTENSION_free(ext);
  }

  // A leaf when `san` is set, else a self-signed CA.
  static cert_ptr make_cert(EVP_PKEY* key, const std::string& cn, X509* issuer,
                            EVP_PKEY* issuer_key, const std::string& san) {
    static long serial = 1;
    cert_ptr cert(X509_new());
    X509_set_version(cert.get(), 2);
    ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), serial++);
    X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600);
    X509_gmtime_adj(X509_getm_notAfter(cert.get()), 24 * 3600);
    X509_set_pubkey(cert.get(), key);
    X509_NAME* name = X509_get_subject_name(cert.get());
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                               reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0);
    X509* signer = issuer ? issuer : cert.get();
    X509_set_issuer_name(cert.get(), X509_get_subject_name(signer));
    if (san.empty()) {
      add_ext(cert.get(), signer, NID_basic_constraints, "critical,CA:TRUE");
      add_ext(cert.get(), signer, NID_key_usage, "critical,keyCertSign,cRLSign");
    } else {
      add_ext(cert.get(), signer, NID_basic_constraints, "CA:FALSE");
      add_ext(cert.get(), signer, NID_subject_alt_name, san);
      add_ext(cert.get(), signer, NID_ext_key_usage, "serverAuth");
    }
    if (!X509_sign(cert.get(), issuer_key, EVP_sha256())) throw std::runtime_error("sign failed");
    return cert;
  }

  static void write_cert(const std::string& path, X509* cert) {
    FILE* f = std::fopen(path.c_str(), "w");
    if (!f || !PEM_write_X509(f, cert)) throw std::runtime_error("cannot write " + path);
    std::fclose(f);
  }

  static void write_key(const std::string& path, EVP_PKEY* key) {
    FILE* f = std::fopen(path.c_str(), "w");
    if (!f || !PEM_write_PrivateKey(f, key, nullptr, nullptr, 0, nullptr, nullptr)) {
      throw std::runtime_error("cannot write " + path);
    }
    std::fclose(f);
  }

  std::filesystem::path dir_;
};

}  // namespace gatherd::test
