#!/usr/bin/env python3
"""A real NTLM validator for squid's `auth_param ntlm program`, on pyspnego's NTLM acceptor.

squid's NTLM helper protocol, one request per line on stdin, one reply per line on stdout:

    YR <base64 NEGOTIATE>     -> TT <base64 CHALLENGE>   (a new handshake)
    KK <base64 AUTHENTICATE>  -> AF <DOMAIN\\user>       (the password checked out)
                              -> NA <reason>             (wrong password, unknown user, NTLMv1)
    anything else, or a KK without a YR first            -> BH <reason>

The password really is checked: pyspnego recomputes the NTLMv2 response from the password in
the credential file and compares. The file is named by `--user-file FILE` or by the
environment variable NTLM_USER_FILE, one `DOMAIN:user:password` a line (user and domain
matched without regard to case). LM_COMPAT_LEVEL (default here 5: NTLMv2 only, LM and NTLMv1
refused) is pyspnego's, as in gss-ntlmssp.

The helper is stateful (one handshake at a time per process), as squid expects of NTLM
helpers: use `auth_param ntlm children N` for parallel handshakes, never concurrency.
Diagnostics go to stderr (squid's cache.log); nothing secret is ever printed.
"""

import argparse
import base64
import binascii
import os
import sys


def reply(line):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def one_line(text):
    """A reason fit for one protocol line."""
    return " ".join(str(text).split()) or "error"


def main():
    parser = argparse.ArgumentParser(description="squid NTLM helper on pyspnego")
    parser.add_argument("--user-file", help="DOMAIN:user:password file (else NTLM_USER_FILE)")
    parser.add_argument(
        "--lm-compat-level",
        default=None,
        help="pyspnego LM_COMPAT_LEVEL (else the environment's, else 5: NTLMv2 only)",
    )
    args = parser.parse_args()

    if args.user_file:
        os.environ["NTLM_USER_FILE"] = args.user_file
    if args.lm_compat_level is not None:
        os.environ["LM_COMPAT_LEVEL"] = args.lm_compat_level
    os.environ.setdefault("LM_COMPAT_LEVEL", "5")
    user_file = os.environ.get("NTLM_USER_FILE", "")
    if not user_file or not os.path.isfile(user_file):
        sys.stderr.write("squid_ntlm_helper: no user file (NTLM_USER_FILE or --user-file)\n")
        return 2

    # Imported after the environment is set: pyspnego reads it when a context is made.
    try:
        import spnego
        from spnego.exceptions import SpnegoError
    except ImportError:
        sys.stderr.write(
            "squid_ntlm_helper: pyspnego is not importable by %s (run it with the virtualenv's"
            " python3 by its full path, e.g. through /usr/bin/env)\n" % sys.executable
        )
        return 2

    def new_context():
        # use_ntlm: pyspnego's own NTLM code, never a system GSSAPI's, so the user file and
        # LM_COMPAT_LEVEL above are what decides.
        return spnego.server(protocol="ntlm", options=spnego.NegotiateOptions.use_ntlm)

    context = None
    for raw in sys.stdin:
        line = raw.strip()
        if not line:
            continue
        verb, _, arg = line.partition(" ")
        arg = arg.strip()
        try:
            token = base64.b64decode(arg, validate=True) if arg else b""
        except (binascii.Error, ValueError):
            reply("BH invalid base64")
            context = None
            continue

        if verb == "YR":
            if not token:
                reply("BH YR without a NEGOTIATE token")
                continue
            try:
                context = new_context()
                challenge = context.step(token)
            except SpnegoError as e:
                context = None
                reply("BH " + one_line(e))
                continue
            except Exception as e:  # a malformed token: pyspnego raises plain errors too
                context = None
                reply("BH malformed NEGOTIATE: " + one_line(type(e).__name__))
                continue
            reply("TT " + base64.b64encode(challenge).decode("ascii"))
        elif verb == "KK":
            if context is None:
                reply("BH KK without a handshake (YR) first")
                continue
            ctx, context = context, None
            try:
                ctx.step(token)
            except SpnegoError as e:
                sys.stderr.write("squid_ntlm_helper: refused: %s\n" % one_line(e))
                reply("NA " + one_line(e))
                continue
            except Exception as e:
                reply("NA malformed AUTHENTICATE: " + one_line(type(e).__name__))
                continue
            if not ctx.complete:
                reply("NA handshake incomplete")
                continue
            user = ctx.client_principal or ""
            reply("AF " + one_line(user))
        else:
            reply("BH unknown request " + one_line(verb)[:16])
            context = None
    return 0


if __name__ == "__main__":
    sys.exit(main())
