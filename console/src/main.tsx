// The console: a sign-in, then the pages the token may read. Routes live in the hash
// (#/desk, #/customers/acme, #/ops), so the API serves one page and a link can be shared.
import { render } from "preact";
import { useEffect, useState } from "preact/hooks";
import { ApiError, get, type Me, setToken, token } from "./api";
import { CustomerPage } from "./pages/customer";
import { Desk } from "./pages/desk";
import { Ops } from "./pages/ops";
import { OwnView } from "./pages/own";
import { QuotePage } from "./pages/quote";
import { SignIn } from "./pages/signin";
import "./style.css";

function useHash(): string {
  const [hash, setHash] = useState(location.hash.slice(1) || "/");
  useEffect(() => {
    const on = () => setHash(location.hash.slice(1) || "/");
    window.addEventListener("hashchange", on);
    return () => window.removeEventListener("hashchange", on);
  }, []);
  return hash;
}

function home(me: Me): string {
  if (me.kind === "customer") return `/me`;
  if (me.role === "provisioner") return "/ops";
  return "/desk";
}

function Nav(props: { me: Me; path: string; onSignOut: () => void }) {
  const { me } = props;
  const links: [string, string][] =
    me.kind === "customer"
      ? [["/me", "My usage"]]
      : [
          ...(me.role !== "provisioner" ? ([["/desk", "Desk"]] as [string, string][]) : []),
          ...(me.role !== "sales" ? ([["/ops", "Ops"]] as [string, string][]) : []),
        ];
  return (
    <header class="top">
      <a class="brand" href="#/">
        Telemeter
      </a>
      <nav aria-label="Main">
        {links.map(([to, text]) => (
          <a href={`#${to}`} aria-current={props.path.startsWith(to) ? "page" : undefined}>
            {text}
          </a>
        ))}
      </nav>
      <span class="who" data-testid="who">
        {me.kind === "customer" ? `customer ${me.customer_id}` : `${me.name} (${me.role})`}
      </span>
      <button type="button" onClick={props.onSignOut}>
        Sign out
      </button>
    </header>
  );
}

const ME_KEY = "telemeter.me";

/** Who the token was at sign-in (this tab only): a reload shows the pages at once while
 * GET /v1/me checks the token again; a revoked token (401) signs out. Every page's reads
 * are checked by the API whatever this says. */
function remembered(): Me | null {
  const text = token() === null ? null : sessionStorage.getItem(ME_KEY);
  return text ? (JSON.parse(text) as Me) : null;
}

function App() {
  const path = useHash();
  const [me, setMeState] = useState<Me | null>(remembered);
  const [checking, setChecking] = useState(token() !== null && me === null);
  const setMe = (who: Me | null) => {
    if (who === null) sessionStorage.removeItem(ME_KEY);
    else sessionStorage.setItem(ME_KEY, JSON.stringify(who));
    setMeState(who);
  };
  const signOut = () => {
    setToken(null);
    setMe(null);
    location.hash = "#/";
  };
  useEffect(() => {
    if (token() === null) return;
    get<Me>("/v1/me")
      .then(setMe)
      .catch((e) => {
        if (e instanceof ApiError && e.status === 401) signOut();
      })
      .finally(() => setChecking(false));
  }, []);
  if (checking) return <p class="loading">Checking your token…</p>;
  if (me === null) {
    return (
      <SignIn
        onSignedIn={(who) => {
          setMe(who);
          if (path === "/" || path === "/signin") location.hash = `#${home(who)}`;
        }}
      />
    );
  }
  let page;
  const customer = path.match(/^\/customers\/([^/?]+)/);
  const quote = path.match(/^\/quote(\?.*)?$/);
  if (path === "/" || path === "/signin") {
    location.hash = `#${home(me)}`;
    page = null;
  } else if (path.startsWith("/me")) page = <OwnView me={me} />;
  else if (path.startsWith("/desk")) page = <Desk />;
  else if (customer) page = <CustomerPage customerId={decodeURIComponent(customer[1])} me={me} />;
  else if (quote) page = <QuotePage params={new URLSearchParams(quote[1] ?? "")} />;
  else if (path.startsWith("/ops")) page = <Ops />;
  else page = <p>No page at {path}.</p>;
  return (
    <>
      <Nav me={me} path={path} onSignOut={signOut} />
      <main id="main" tabIndex={-1}>
        {page}
      </main>
    </>
  );
}

render(<App />, document.getElementById("app")!);
