// The profile page: summary tables rendered here, the trace embedded as JSON
// and drawn by a small inline script on a canvas.
#include "src/report/profile_html.h"

#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>

namespace streamq {

using nlohmann::json;

namespace {

std::string html_escape(const std::string& s) {
  std::string o;
  for (char c : s) {
    switch (c) {
      case '&': o += "&amp;"; break;
      case '<': o += "&lt;"; break;
      case '>': o += "&gt;"; break;
      case '"': o += "&quot;"; break;
      case '\'': o += "&#39;"; break;
      default: o += c;
    }
  }
  return o;
}

// JSON inside <script>: "</" would end the element, and JSON allows "\/".
std::string script_safe(const std::string& s) {
  std::string o;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '<' && i + 1 < s.size() && s[i + 1] == '/') o += "<\\";
    else o += s[i];
  }
  return o;
}

std::string num(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

std::string td(const std::string& s) { return "<td>" + html_escape(s) + "</td>"; }

std::string tables(const ProfileSummary& s) {
  std::string o = "<h2>Categories</h2>\n<table><tr><th>category</th><th>spans</th><th>total s</th><th>active s</th>"
                  "<th>hidden under compute</th><th>GB</th><th>GB/s</th><th>GFLOP</th><th>GFLOP/s</th></tr>\n";
  for (const auto& c : s.categories) {
    const bool compute = is_compute_category(c.category);
    o += "<tr>" + td(c.category.empty() ? "(none)" : c.category) + td(std::to_string(c.count)) +
         td(num("%.6f", c.total_us / 1e6)) + td(num("%.6f", c.active_us / 1e6)) +
         td(compute || c.active_us <= 0 ? "" : num("%.1f%%", 100 * c.hidden_us / c.active_us)) +
         td(c.bytes > 0 ? num("%.3f", c.bytes / 1e9) : "") + td(c.bytes > 0 ? num("%.2f", c.gbps()) : "") +
         td(c.flops > 0 ? num("%.2f", c.flops / 1e9) : "") + td(c.flops > 0 ? num("%.2f", c.gflops()) : "") + "</tr>\n";
  }
  o += "</table>\n<h2>Lanes</h2>\n<table><tr><th>lane</th><th>spans</th><th>busy s</th><th>busy % of wall</th></tr>\n";
  for (std::size_t i = 0; i < s.lanes.size(); ++i) {
    const auto& l = s.lanes[i];
    o += "<tr>" + td(l.name + (static_cast<int>(i) == s.busiest_lane ? " (busiest)" : "")) +
         td(std::to_string(l.spans)) + td(num("%.6f", l.busy_us / 1e6)) +
         td(s.wall_us > 0 ? num("%.1f%%", 100 * l.busy_us / s.wall_us) : "-") + "</tr>\n";
  }
  return o + "</table>\n";
}

constexpr const char* kStyle = R"(
body{font:13px system-ui,sans-serif;margin:16px;color:#222}
h1{font-size:18px}h2{font-size:15px;margin-top:20px}
table{border-collapse:collapse;margin:6px 0}
td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}
td:first-child,th:first-child{text-align:left}
#wrap{position:relative;border:1px solid #999;user-select:none}
canvas{display:block;cursor:grab}
#tip{position:absolute;pointer-events:none;background:#fffbe6;border:1px solid #999;padding:4px 6px;
 font:12px monospace;white-space:pre;display:none;z-index:2;max-width:600px;overflow:hidden}
.legend span{display:inline-block;margin:0 12px 6px 0}
.legend i{display:inline-block;width:12px;height:12px;margin-right:4px;vertical-align:middle}
.hint{color:#777}
)";

constexpr const char* kScript = R"(
(function(){
const D=JSON.parse(document.getElementById('trace-data').textContent);
const LABEL=170,SUB=16,GAP=4,AXIS=22;
const known={read:'#4e79a7',write:'#f28e2b',decompress:'#76b7b2',compress:'#59a14f',h2d:'#edc948',
 compute:'#e15759',quantize:'#b07aa1',forward:'#ff9da7',stats:'#9c755f'};
function color(c){if(known[c])return known[c];let h=0;for(const ch of c)h=(h*31+ch.charCodeAt(0))>>>0;
 return 'hsl('+(h%360)+',55%,62%)';}
function fmt(us){return us<1e3?us.toFixed(1)+' us':us<1e6?(us/1e3).toFixed(3)+' ms':(us/1e6).toFixed(3)+' s';}
// Stack each span in the lowest free slot of its lane: nested spans and
// overlapping in-flight requests (an I/O ring) then never hide each other.
const slot=new Array(D.spans.length),slots=D.lanes.map(()=>[]),byLane=D.lanes.map(()=>[]);
D.spans.forEach((s,i)=>{const sl=slots[s[0]];let d=0;while(d<sl.length&&sl[d]>s[1])d++;
 sl[d]=s[1]+s[2];slot[i]=d;byLane[s[0]].push(i);});
const rows=[];let y=AXIS;
D.lanes.forEach((n,l)=>{const h=Math.max(1,slots[l].length)*SUB;rows.push({y:y,h:h});y+=h+GAP;});
const H=y+4;
const legend=document.getElementById('legend');
D.cats.forEach(c=>{const e=document.createElement('span');e.innerHTML='<i></i>';e.firstChild.style.background=color(c);
 e.appendChild(document.createTextNode(c||'(none)'));legend.appendChild(e);});
const cv=document.getElementById('tl'),ctx=cv.getContext('2d'),tip=document.getElementById('tip');
let W=800,t0=0,t1=Math.max(D.wall,1);
function xOf(t){return LABEL+(t-t0)/(t1-t0)*(W-LABEL);}
function tOf(x){return t0+(x-LABEL)/(W-LABEL)*(t1-t0);}
function draw(){
 ctx.clearRect(0,0,W,H);ctx.font='11px sans-serif';ctx.textBaseline='middle';
 rows.forEach((r,l)=>{ctx.fillStyle=l%2?'#f4f4f4':'#fff';ctx.fillRect(0,r.y,W,r.h);
  ctx.fillStyle='#222';ctx.fillText(D.lanes[l].slice(0,26),4,r.y+SUB/2);});
 const span=t1-t0,raw=span/8,p=Math.pow(10,Math.floor(Math.log10(raw)));
 const step=raw/p<2?p:raw/p<5?2*p:5*p;
 ctx.strokeStyle='#ddd';ctx.fillStyle='#555';
 for(let t=Math.ceil(t0/step)*step;t<=t1;t+=step){const x=xOf(t);
  ctx.beginPath();ctx.moveTo(x,AXIS-4);ctx.lineTo(x,H);ctx.stroke();ctx.fillText(fmt(t),x+2,AXIS/2);}
 ctx.save();ctx.beginPath();ctx.rect(LABEL,0,W-LABEL,H);ctx.clip();
 D.spans.forEach((s,i)=>{const x0=xOf(s[1]),x1=xOf(s[1]+s[2]);if(x1<LABEL||x0>W)return;
  const r=rows[s[0]],yy=r.y+slot[i]*SUB+1,w=Math.max(1,x1-x0);
  ctx.fillStyle=color(D.cats[s[3]]);ctx.fillRect(x0,yy,w,SUB-2);
  if(w>40){ctx.save();ctx.beginPath();ctx.rect(x0,yy,w,SUB-2);ctx.clip();ctx.fillStyle='#111';
   ctx.fillText(s[4],Math.max(x0,LABEL)+2,yy+SUB/2-1);ctx.restore();}});
 ctx.restore();
}
function resize(){W=document.getElementById('wrap').clientWidth;const dpr=window.devicePixelRatio||1;
 cv.width=W*dpr;cv.height=H*dpr;cv.style.width=W+'px';cv.style.height=H+'px';ctx.setTransform(dpr,0,0,dpr,0,0);draw();}
function hit(x,y){for(let l=0;l<rows.length;l++){const r=rows[l];if(y<r.y||y>=r.y+r.h)continue;
  const d=Math.floor((y-r.y)/SUB),t=tOf(x),tol=(t1-t0)/(W-LABEL);
  for(const i of byLane[l]){const s=D.spans[i];if(slot[i]===d&&t>=s[1]-tol&&t<=s[1]+s[2]+tol)return i;}}
 return -1;}
let drag=null;
cv.addEventListener('mousedown',e=>{drag={x:e.offsetX,t0:t0,t1:t1};cv.style.cursor='grabbing';});
window.addEventListener('mouseup',()=>{drag=null;cv.style.cursor='grab';});
cv.addEventListener('mousemove',e=>{
 if(drag){const dt=(e.offsetX-drag.x)/(W-LABEL)*(drag.t1-drag.t0);t0=drag.t0-dt;t1=drag.t1-dt;draw();return;}
 const i=e.offsetX>LABEL?hit(e.offsetX,e.offsetY):-1;
 if(i<0){tip.style.display='none';return;}
 const s=D.spans[i];
 tip.textContent=s[4]+'\ncategory '+(D.cats[s[3]]||'(none)')+'   lane '+D.lanes[s[0]]+'\nstart '+fmt(s[1])+
  '   duration '+fmt(s[2])+(s[5]?'\n'+JSON.stringify(s[5],null,1).replace(/\n\s*/g,' '):'');
 tip.style.display='block';tip.style.left=Math.min(e.offsetX+12,W-300)+'px';tip.style.top=(e.offsetY+14)+'px';});
cv.addEventListener('mouseleave',()=>{tip.style.display='none';});
cv.addEventListener('wheel',e=>{e.preventDefault();if(e.offsetX<LABEL)return;
 const tm=tOf(e.offsetX),f=Math.exp(e.deltaY*0.002);let a=tm-(tm-t0)*f,b=tm+(t1-tm)*f;
 if(b-a<1){const c=(a+b)/2;a=c-0.5;b=c+0.5;}t0=a;t1=b;draw();},{passive:false});
cv.addEventListener('dblclick',()=>{t0=0;t1=Math.max(D.wall,1);draw();});
window.addEventListener('resize',resize);resize();
})();
)";

}  // namespace

std::string render_profile_html(const ParsedTrace& trace, const ProfileSummary& summary, const std::string& title) {
  // Compact rows [lane, ts_us, dur_us, category index, name, args or 0] keep
  // the page small for traces of many thousand spans.
  std::map<std::string, int> cat_index;
  json cats = json::array(), spans = json::array();
  for (const auto& s : trace.spans) {
    auto [it, fresh] = cat_index.try_emplace(s.category, static_cast<int>(cats.size()));
    if (fresh) cats.push_back(s.category);
    spans.push_back({s.lane, s.ts_us, s.dur_us, it->second, s.name, s.args.empty() ? json(0) : s.args});
  }
  const json data = {{"lanes", trace.lane_names}, {"cats", cats}, {"spans", spans}, {"wall", summary.wall_us}};

  std::string o = "<!doctype html>\n<html><head><meta charset=\"utf-8\">\n<title>streamq profile: " +
                  html_escape(title) + "</title>\n<style>" + kStyle + "</style></head>\n<body>\n";
  o += "<h1>streamq profile: " + html_escape(title) + "</h1>\n";
  o += "<p>" + std::to_string(summary.spans) + " spans on " + std::to_string(summary.lanes.size()) + " lanes, wall " +
       num("%.6f", summary.wall_us / 1e6) + " s; I/O hidden under compute: " +
       (summary.io_hidden_fraction < 0 ? std::string("no I/O") : num("%.1f%%", 100 * summary.io_hidden_fraction)) +
       "</p>\n";
  o += "<div class=\"legend\" id=\"legend\"></div>\n"
       "<div id=\"wrap\"><canvas id=\"tl\"></canvas><div id=\"tip\"></div></div>\n"
       "<p class=\"hint\">wheel: zoom &middot; drag: pan &middot; double-click: whole trace &middot; "
       "hover: span details</p>\n";
  o += tables(summary);
  o += "<h2>Summary</h2>\n<pre>" + html_escape(format_summary(summary)) + "</pre>\n";
  const std::string data_text = data.dump(-1, ' ', false, json::error_handler_t::replace);
  o += "<script type=\"application/json\" id=\"trace-data\">" + script_safe(data_text) + "</script>\n";
  o += std::string("<script>") + kScript + "</script>\n</body></html>\n";
  return o;
}

}  // namespace streamq
