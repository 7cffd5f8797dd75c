// Sign in with a staff token (tms_…, or the admin token) or a customer API key (tmk_…):
// GET /v1/me says which, and the console shows only what that token may read. The token is
// kept in this tab's sessionStorage, never in a cookie or a URL.
import { useState } from "preact/hooks";
import { ApiError, get, type Me, setToken } from "../api";

export function SignIn(props: { onSignedIn: (me: Me) => void }) {
  const [value, setValue] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    setToken(value.trim());
    try {
      props.onSignedIn(await get<Me>("/v1/me"));
    } catch (err) {
      setToken(null);
      setError(err instanceof ApiError ? err.message : String(err));
    } finally {
      setBusy(false);
    }
  };
  return (
    <main id="main" class="signin">
      <form onSubmit={submit} aria-labelledby="signin-h">
        <h1 id="signin-h">Telemeter console</h1>
        <p class="muted">
          Sign in with a staff token (admin, sales or provisioner) or your customer API key.
        </p>
        <label for="token">Token</label>
        <input
          id="token"
          name="token"
          type="password"
          autocomplete="off"
          autoFocus
          required
          value={value}
          onInput={(e) => setValue((e.target as HTMLInputElement).value)}
        />
        {error && (
          <p class="problem" role="alert">
            {error}
          </p>
        )}
        <button type="submit" disabled={busy}>
          Sign in
        </button>
      </form>
    </main>
  );
}
