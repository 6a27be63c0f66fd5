"""Ordinary words: the words of a report that carry no field meaning.

The extractor fills a label's missing parts with defaults (LV, absolute, native myocardium). That is
only safe when every token of the label is understood: a token that is neither vocabulary nor one
of these words may be the very part the default would supply ('T1 XQ' where XQ means blood pool).
So a word is "unknown" when it is in none of these lists and not in the lexicon; a label, heading
or table column with an unknown word gets no defaults, and an unknown token right after a number
is an unknown unit (the number gives null, never a number read in the wrong unit).
"""

from __future__ import annotations

# English function words and common prose (a consult letter, a dictation).
ENGLISH = frozenset("""
a an the this that these those there here it its itself he she him her his hers they them their theirs we us our
you your i me my mine who whom whose which what when where why how whether if unless because since although though
while whereas as so than then thus hence therefore however also too very quite rather fairly somewhat slightly
just only even still yet already again further furthermore moreover otherwise instead else both either neither nor
not no yes none nothing any some all each every few many much more most less least several other others another
such same own one two three four five six seven eight nine ten first second third last next previous following
and or but of in on at to for from by with without within into onto upon over under above below between among
about around across along after before during until till through throughout towards toward against beside besides
beyond via per plus minus versus vs vs. etc eg ie cf ca approx approximately about around roughly nearly almost
is are was were be been being am has have had having do does did done doing will would shall should can could
may might must ought need needs needed
see seen shown show shows showed demonstrate demonstrates demonstrated reveal reveals revealed note notes noted
appear appears appeared remain remains remained become becomes became measure measured measures measuring
calculate calculated calculation derive derived obtain obtained perform performed performing acquire acquired
assess assessed assessment evaluate evaluated evaluation estimate estimated estimation compare compared review
reviewed report reported reports discuss discussed recommend recommended suggest suggested consider considered
thank thanks dear kind regards sincerely yours letter clinic referral referred referring seeing pleasant
gentleman lady man woman male female patient patients year years old aged age today yesterday recently recent
currently current now then later earlier subsequently prior previously follow followup followed up down out off
well good better best poor worse worst high higher highest low lower lowest normal abnormal borderline upper
top bottom overall global regional general generally usual usually typical typically likely unlikely possible
possibly probable probably consistent compatible suggestive evidence finding findings feature features result
results value values number numbers data measurement measurements parameter parameters item items field fields
list table summary section page line lines text comment comments remark remarks note notes addendum amended
within range ranges limit limits grade graded degree mildly moderately severely markedly mild moderate severe
marked significant significantly small large larger smaller big size sized enlarged dilated dilatation dilation
increased decreased reduced preserved impaired depressed elevated raised normalised normalized hyperdynamic
hypertrophied hypertrophic thickened thinned thin thick function functions functional systolic diastolic global
regional segmental wall motion abnormality abnormalities akinetic hypokinetic dyskinetic akinesia hypokinesia
""".split())

# Words of CMR reports (headings, methods, anatomy) that name no field part on their own.
REPORT = frozenset("""
cardiac cardiovascular cardiology heart mri mr cmr magnetic resonance imaging image images study studies exam
examination scan scanner protocol technique sequence sequences cine ssfp trufi fiesta molli shmolli sasha saturation
recovery inversion mapping map maps gadolinium gadobutrol gadoterate dotarem gadovist magnevist meglumine contrast
agent bolus injection administered tesla field strength gating gated ecg breath hold holds acquisition acquired
analysis analysed analyzed software version export exported summary quantitative quantification qmass cvi42 cvi
syngo suiteheart medis circle argus precession segment segments slice slices stack short long axis axial coronal
sagittal planes plane views view chamber chambers biplane monoplane simpson simpsons method area length mosteller
dubois formula trabeculations trabeculae papillary muscles muscle included excluded including excluding basal
mid apical apex base anterior inferior lateral septal posterior anteroseptal inferoseptal anterolateral
inferolateral free wall walls septum insertion points point biventricular ventricles ventricular atria atrial
chambers valve valves mitral tricuspid aortic pulmonary pulmonic regurgitation stenosis flow pericardium
pericardial effusion thrombus mass lesion scar fibrosis oedema edema infiltration enhancement lge late early
perfusion rest resting stress viability tissue characterisation characterization myocardial myocardium blood
cavity vitals vital signs biometrics biometry anthropometrics demographics body patient weight height sex gender
measurement linear dimensions dimension volumes function flows tissue parameters indexed index indices unit units
uom reference normal range ranges lower upper limit limits result results value values comment status
impression conclusion conclusions opinion interpretation findings history indication clinical question details
information info identification identifier code codes coding loinc snomed ucum observation observations component
components panel record export entry entries row rows column columns key keys name label labels type kind source
method methods site institution hospital department unit center centre medical health university signed verified
electronically dictated transcribed reviewed reported reporting physician consultant radiologist cardiologist
resident fellow technologist nurse md phd mbbs frcp dr mr mrs ms miss prof
""".split())

# Short words of any report (the noise gate's list).
COMMON_ENGLISH = frozenset("""the and with for are was were has have had this that from not but all any can her his him
she they them their there then than into onto over under upon about after before during while which who whom whose
what when where why how its our out per pre post via also only both each more most much very well good normal
mild moderate severe severely mildly moderately no yes none report patient study exam examination findings impression
history indication technique comparison conclusion assessment summary function size shape wall walls motion segment
segments basal mid apical anterior inferior lateral septal free cardiac heart mri cmr contrast enhancement late dilated
dilatation enlargement reduced preserved increased decreased small large thin thick hypertrophy hypokinesis akinesis
valve valves mitral tricuspid aortic pulmonary regurgitation stenosis effusion pericardial thrombus scar infarct
infarction fibrosis pattern territory consistent suggest suggests suggestive likely evidence seen noted measured
measures measuring estimated calculated value values units unit mean date name signed dictated reviewed parameter
result results reference range sinus rhythm rate rest stress perfusion viability myocardial myocardium chamber view
axis short long cine ssfp lge mapping native blood pool cavity ejection fraction volume volumes mass index output
stroke diastolic systolic end left right ventricle ventricular atrium atrial atria dimension diameter length area
thickness height weight body surface pressure""".split())

# Words after a number that make it a count, a duration or a dose, never a measurement.
BAD_FOLLOWERS = frozenset(
    """minute minutes min mins hour hours hrs h day days week weeks wk wks month months year years
    yr yrs yo y old segment segments slice slices phase phases frame frames mmol mg mcg ug t tesla x
    times fold point points degree degrees deg patients patient cases case leads lead cycles th st nd
    rd channel channels element elements dose doses vessel vessels mcg kg/min french fr sec/min
    heartbeats beat cm/s m/s""".split()
)
COMPARATOR_WORDS = frozenset({"than", "below", "above", "under", "upto", "exceeding", "least", "most"})
MONTHS = frozenset("""jan feb mar apr may jun jul aug sep sept oct nov dec january february march april june july
august september october november december""".split())
WORDS = ENGLISH | REPORT | COMMON_ENGLISH | BAD_FOLLOWERS | COMPARATOR_WORDS | MONTHS
